//! [`Error`]: why a runtime call failed. It sits at the bottom of the runtime's modules (it names
//! nothing above the IR), so every layer — devices, tensors, launches, the registry — returns it.

use crate::ir::interp::InterpError;

/// Why a launch failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("@{kernel}: argument `{param}` must be {expected}, got {found}")]
    Argument {
        kernel: String,
        param: String,
        expected: String,
        found: String,
    },
    #[error("@{kernel}: {message}")]
    Shape { kernel: String, message: String },
    #[error("@{kernel}: building the kernel failed: {message}")]
    Build { kernel: String, message: String },
    #[error("@{kernel}: the grid {grid:?} is empty: every dimension needs at least one block")]
    EmptyGrid { kernel: String, grid: [u32; 3] },
    #[error(
        "@{kernel}: the grid {grid:?} exceeds the GPUs' limits, which every device keeps: at \
         most 2147483647 blocks along x and 65535 along y and z"
    )]
    GridTooLarge { kernel: String, grid: [u32; 3] },
    #[error(
        "@{kernel}: the writable argument `{output}` shares memory with argument `{other}`; a \
         kernel's outputs must not overlap its other tensor arguments (what it would compute \
         depends on the device): pass a copy of one of them (`Tensor::contiguous`)"
    )]
    Overlap {
        kernel: String,
        output: String,
        other: String,
    },
    #[error("unknown device `{name}` (devices: cpu, cuda, cuda:N, hip, hip:N)")]
    UnknownDevice { name: String },
    #[error("no {what} found (could not load {library}); the cpu device works without it")]
    NoDriver { what: String, library: String },
    #[error("no device {device}: the driver sees {count}")]
    NoSuchDevice { device: String, count: usize },
    #[error("{device}: {message}")]
    UnsupportedDevice { device: String, message: String },
    #[error("{device}: {call} failed: {message}")]
    Driver {
        device: String,
        call: String,
        message: String,
    },
    #[error("@{kernel}: the driver of {device} rejected its code: {log}")]
    Jit {
        kernel: String,
        device: String,
        log: String,
    },
    #[error("@{kernel}: no code for {device}: {message}")]
    NoCode {
        kernel: String,
        device: String,
        message: String,
    },
    #[error("@{kernel} on {device} ({config}) failed: {message}")]
    Launch {
        kernel: String,
        device: String,
        config: String,
        message: String,
    },
    #[error(
        "@{kernel}: argument `{param}` lives on {tensor}, but the launch is on {launch}; \
         copy it with `Tensor::to`"
    )]
    WrongDevice {
        kernel: String,
        param: String,
        tensor: String,
        launch: String,
    },
    #[error("no registered kernel `{name}{variant}`; registered: {available}")]
    UnknownKernel {
        name: String,
        variant: String,
        available: String,
    },
    #[error("the module has no kernel `{name}`; its kernels: {available}")]
    NotInModule { name: String, available: String },
    #[error("tensor: {message}")]
    Tensor { message: String },
    #[error(transparent)]
    Interp(#[from] InterpError),
}
