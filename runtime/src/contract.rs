//! Launch contracts at run time: what `#[kernel(shapes(…), grid = […])]` generates calls
//! these to check a launch's arguments and grid (see the `tilekit::kernel` docs for the
//! syntax). Every error names the arguments and dimensions involved, their values, and the
//! contract as written.
//!
//! ```
//! use tilekit::dsl::*;
//! use tilekit::ir::interp::HostTensor;
//! use tilekit::ir::ScalarType::F32;
//! use tilekit::{Device, Error};
//!
//! /// `y = x · w`, `w` broadcast along the rows.
//! #[tilekit::kernel(shapes(x: [T, H], w: [H], y: [T, H]), grid = [ceil_div(T, 16), ceil_div(H, 16), 1])]
//! fn scale_cols(x: Gl<f32, 2>, w: Gl<f32, 1>, y: GlMut<f32, 2>) {
//!     let t: Rt<f32, 16, 16> = load(x.tile(block_idx_x(), block_idx_y()));
//!     let s: Rv<f32, 16, Cols> = load(w.chunk(block_idx_y()));
//!     store(y.tile(block_idx_x(), block_idx_y()), mul_col(t, s));
//! }
//!
//! let x = HostTensor::zeros(F32, &[40, 24]);
//! let w = HostTensor::zeros(F32, &[20]);
//! let mut y = HostTensor::zeros(F32, &[40, 24]);
//! let err = scale_cols::launch_auto(&Device::Cpu, &x, &w, &mut y).unwrap_err();
//! assert!(err.to_string().contains("`w` dimension 0 is 20, but the contract needs H = 24 from `x` dimension 1"), "{err}");
//! ```

use crate::device::{Grid, LaunchArg};
use crate::error::Error;

/// A kernel's launch contract at work on one argument list (made by the code `#[kernel(shapes(…),
/// grid = […])]` generates; see the `tilekit::kernel` docs). Every error names the arguments and
/// dimensions involved, their values, and the contract as written.
#[doc(hidden)]
#[derive(Debug)]
pub struct Contract<'a> {
    /// Each listed tensor: its parameter name and shape.
    tensors: Vec<(&'static str, &'a [usize])>,
    /// The contract as written, for messages.
    text: &'static str,
}

/// A kernel's contract function (`contract` on a kernel, [`Variant::contract`](crate::registry::Variant)):
/// checks the arguments' shapes and gives the grid the contract declares, if any.
pub type ContractFn = fn(&[LaunchArg]) -> Result<Option<[u32; 3]>, String>;

/// A name a contract expression reads: (name, value, listed tensor, axis where it is bound).
#[doc(hidden)]
pub type Bound = (&'static str, usize, usize, usize);

impl<'a> Contract<'a> {
    /// Reads the listed tensors `(name, parameter index, listed rank)` from `args`.
    pub fn new(
        args: &'a [LaunchArg],
        listed: &[(&'static str, usize, usize)],
        text: &'static str,
    ) -> Result<Contract<'a>, String> {
        let mut tensors = Vec::with_capacity(listed.len());
        for &(name, index, rank) in listed {
            let Some(arg) = args.get(index) else {
                return Err(format!(
                    "expected at least {} arguments (`{name}` is argument {index}), got {}; contract: {text}",
                    index + 1,
                    args.len()
                ));
            };
            if arg.tensor_dtype().is_none() || arg.shape().len() != rank {
                return Err(format!(
                    "argument {index} (`{name}`) must be a tensor of rank {rank}, got {}; expected ({text})",
                    arg.describe()
                ));
            }
            tensors.push((name, arg.shape()));
        }
        Ok(Contract { tensors, text })
    }

    /// Dimension `axis` of listed tensor `t`.
    pub fn dim(&self, t: usize, axis: usize) -> usize {
        self.tensors[t].1[axis]
    }

    fn names(&self, vars: &[Bound]) -> String {
        vars.iter()
            .map(|&(name, value, t, axis)| {
                format!(
                    "{name} = {value} from `{}` dimension {axis}",
                    self.tensors[t].0
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Dimension `axis` of listed tensor `t` must be `want` (the value of `what`, which reads `vars`).
    pub fn expect(
        &self,
        t: usize,
        axis: usize,
        want: usize,
        what: &str,
        vars: &[Bound],
    ) -> Result<(), String> {
        let (name, shape) = self.tensors[t];
        let got = shape[axis];
        if got == want {
            return Ok(());
        }
        let why = match vars {
            [] => format!("{what} = {want}"),
            [(v, _, _, _)] if *v == what => self.names(vars),
            _ => format!("{what} = {want} ({})", self.names(vars)),
        };
        Err(format!(
            "`{name}` dimension {axis} is {got}, but the contract needs {why} (`{name}` has shape {shape:?}); contract: {}",
            self.text
        ))
    }

    /// Condition `what` (over `vars`) must hold.
    pub fn require(&self, holds: bool, what: &str, vars: &[Bound]) -> Result<(), String> {
        if holds {
            return Ok(());
        }
        Err(format!(
            "the contract needs {what}, which does not hold for {}; contract: {}",
            self.names(vars),
            self.text
        ))
    }

    /// The grid the contract declares: blocks along x, y and z, each with its expression text
    /// and the names it reads.
    pub fn grid(&self, axes: [(usize, &str, &[Bound]); 3]) -> Result<[u32; 3], String> {
        let mut grid = [0u32; 3];
        for (i, (n, what, vars)) in axes.into_iter().enumerate() {
            grid[i] = u32::try_from(n).map_err(|_| {
                format!(
                    "the grid needs {what} = {n} blocks along {}, more than a launch can have ({})",
                    AXES[i],
                    self.names(vars)
                )
            })?;
        }
        Ok(grid)
    }
}

const AXES: [&str; 3] = ["x", "y", "z"];

/// A launch's grid against the grid the kernel's contract computed from the arguments: every
/// axis must have at least the blocks the contract asks for (fewer would leave outputs
/// unwritten), and the error names the axis and both grids.
#[doc(hidden)]
pub fn check_grid(given: [u32; 3], needed: [u32; 3], grid_text: &str) -> Result<(), String> {
    for i in 0..3 {
        if given[i] < needed[i] {
            return Err(format!(
                "the grid {given:?} has {} blocks along {}, but the arguments need {needed:?} ({grid_text}): blocks along {} would be missing",
                given[i], AXES[i], AXES[i]
            ));
        }
    }
    Ok(())
}

/// The grid of a typed launch: the kernel's shape rule (`check`, its contract included) must
/// accept the arguments; a `given` grid must have on every axis at least the blocks of the
/// grid the contract declares; without one, the contract's grid is the launch's.
#[doc(hidden)]
pub fn __launch_grid(
    kernel: &str,
    args: &[LaunchArg],
    given: Option<Grid>,
    check: fn(&[LaunchArg]) -> Result<(), String>,
    contract: ContractFn,
    grid_text: &str,
) -> Result<Grid, Error> {
    crate::launch::__check(kernel, args, check)?;
    let shape = |message: String| Error::Shape {
        kernel: kernel.to_string(),
        message,
    };
    match (given, contract(args).map_err(shape)?) {
        // An empty grid is refused by every device with its own error (`Error::EmptyGrid`).
        (Some(g), _) if g.0.contains(&0) => Ok(g),
        (Some(g), Some(needed)) => {
            check_grid(g.0, needed, grid_text).map_err(shape)?;
            Ok(g)
        }
        (Some(g), None) => Ok(g),
        (None, Some(needed)) => Ok(Grid(needed)),
        (None, None) => Err(shape(
            "the kernel declares no grid in its contract: launch it with one".to_string(),
        )),
    }
}
