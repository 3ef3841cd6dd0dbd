//! The modules of kernel instantiations that the typed launchers build, one per instantiation,
//! kept for the process. It sits below the devices: a GPU launch asks [`built_once`] whether a
//! module lives for good, to hash its Tile IR once rather than on every launch.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::error::Error;
use crate::ir::Module;

/// The modules the typed launchers built, one per kernel instantiation, kept for the process.
static BUILT: OnceLock<Mutex<HashMap<TypeId, &'static Module>>> = OnceLock::new();

/// Whether `module` is one of the modules [`__cached`] built and keeps for the process: never
/// freed, so its address identifies it for good.
pub(crate) fn built_once(module: &Module) -> bool {
    BUILT.get().is_some_and(|b| {
        b.lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|m| std::ptr::eq(*m, module))
    })
}

/// The module of one kernel instantiation, built once per process and kept; a build that
/// panics (a kernel's `assert!` on its comptime parameters) is an error naming the kernel.
/// Used by generated launchers (through `tilekit::launch::__cached`).
#[doc(hidden)]
pub fn __cached(
    kernel: &str,
    id: TypeId,
    build: impl FnOnce() -> Module,
) -> Result<&'static Module, Error> {
    let cache = BUILT.get_or_init(Default::default);
    let lookup = || {
        cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .copied()
    };
    if let Some(m) = lookup() {
        return Ok(m);
    }
    // Built without the lock held: a kernel's build may build another kernel.
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(build)).map_err(|p| {
        let message = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the build panicked".into());
        Error::Build {
            kernel: kernel.to_string(),
            message,
        }
    })?;
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    Ok(map.entry(id).or_insert_with(|| Box::leak(Box::new(built))))
}
