//! The cpu device: the Tile IR interpreter runs the kernel on host tensors.

use crate::error::Error;
use crate::ir::interp::{self, Arg, HostTensor};
use crate::ir::Module;

use super::{Grid, LaunchArg};

/// The interpreter run: host tensors in, their final contents back.
pub(crate) fn run_interp(
    module: &Module,
    kernel: &str,
    grid: Grid,
    args: &mut [LaunchArg],
) -> Result<(), Error> {
    let params = module
        .kernel(kernel)
        .map(|f| {
            f.params
                .iter()
                .map(|p| f.value_names[p.index()].clone().unwrap_or_default())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut interp_args = Vec::with_capacity(args.len());
    for (i, a) in args.iter_mut().enumerate() {
        interp_args.push(match a {
            LaunchArg::Host(t) => {
                Arg::Tensor(std::mem::replace(t, HostTensor::zeros(t.dtype(), &[0])))
            }
            LaunchArg::Scalar(t, v) => Arg::Scalar(*t, *v),
            LaunchArg::Device(v) => {
                return Err(Error::WrongDevice {
                    kernel: kernel.into(),
                    param: params.get(i).cloned().unwrap_or_else(|| format!("#{i}")),
                    tensor: v.device_name(),
                    launch: "cpu".into(),
                })
            }
        });
    }
    let result = interp::run(module, kernel, grid.0, &mut interp_args);
    // Hand the tensors back whether or not the run succeeded.
    for (a, back) in args.iter_mut().zip(interp_args) {
        if let (LaunchArg::Host(t), Arg::Tensor(b)) = (a, back) {
            *t = b;
        }
    }
    result?;
    Ok(())
}
