//! A progress bar for building bundles (`indicatif`), drawn on standard error only when it is
//! a terminal and only once a build has taken long enough to be worth watching.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::CompileProgress;

/// How long a build runs before a bar appears (a quick build prints nothing extra).
const QUIET_FOR: Duration = Duration::from_secs(1);

/// A callback for [`super::compile_registry_with`] that draws a progress bar on standard error
/// when standard error is a terminal and the build has run for more than a second; otherwise
/// it draws nothing. The bar is cleared when the build is done.
pub fn terminal_progress() -> impl FnMut(CompileProgress<'_>) {
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let mut bar: Option<ProgressBar> = None;
    move |p: CompileProgress<'_>| {
        if bar.is_none() && terminal && p.next.is_some() && started.elapsed() >= QUIET_FOR {
            let b =
                ProgressBar::with_draw_target(Some(p.total as u64), ProgressDrawTarget::stderr());
            // The template is fixed text: it parses, and a failure would only lose the style.
            if let Ok(style) =
                ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {wide_msg}")
            {
                b.set_style(style.progress_chars("=> "));
            }
            bar = Some(b);
        }
        let Some(b) = &bar else { return };
        b.set_position(p.done as u64);
        match p.next {
            Some((kernel, variant)) => b.set_message(format!("{kernel}{variant}")),
            None => b.finish_and_clear(),
        }
    }
}
