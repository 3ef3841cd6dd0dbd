//! cuBLAS, loaded at run time, for the benchmark's vendor baseline: one `cublasGemmEx` with
//! bf16 inputs and f32 accumulation (cuBLAS API reference, "cublasGemmEx").

use std::ffi::{c_int, c_void};

use libloading::Library;

type Status = c_int;
type Handle = *mut c_void;

/// `cudaDataType_t` value `CUDA_R_16BF` (library_types.h).
pub const R_16BF: c_int = 14;
/// `CUBLAS_COMPUTE_32F` = 68, `CUBLAS_GEMM_DEFAULT` = -1, `CUBLAS_OP_N` = 0.
const COMPUTE_32F: c_int = 68;
const GEMM_DEFAULT: c_int = -1;
const OP_N: c_int = 0;

type GemmEx = unsafe extern "C" fn(
    Handle,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    *const c_void,
    *const c_void,
    c_int,
    c_int,
    *const c_void,
    c_int,
    c_int,
    *const c_void,
    *mut c_void,
    c_int,
    c_int,
    c_int,
    c_int,
) -> Status;

/// A cuBLAS handle on the current device.
pub struct Cublas {
    handle: Handle,
    gemm_ex: GemmEx,
    destroy: unsafe extern "C" fn(Handle) -> Status,
    _lib: Library,
}

impl std::fmt::Debug for Cublas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cuBLAS handle {:p}", self.handle)
    }
}

impl Cublas {
    /// Loads cuBLAS from `TILEKIT_CUBLAS` (a path; `off` disables the baseline) or the usual
    /// library names.
    pub fn load() -> Result<Cublas, String> {
        let mut names: Vec<String> = Vec::new();
        match std::env::var("TILEKIT_CUBLAS") {
            Ok(p) if p == "off" => return Err("cuBLAS disabled (TILEKIT_CUBLAS=off)".into()),
            Ok(p) => names.push(p),
            Err(_) => {}
        }
        names.extend(["libcublas.so", "libcublas.so.13", "libcublas.so.12"].map(String::from));
        let lib = names
            .iter()
            // SAFETY: loading cuBLAS runs its initializers, which is what using it means.
            .find_map(|n| unsafe { Library::new(n) }.ok())
            .ok_or_else(|| {
                format!(
                    "no cuBLAS found (tried {}); set TILEKIT_CUBLAS to libcublas.so's path",
                    names.join(", ")
                )
            })?;
        // SAFETY: the symbols have the signatures the cuBLAS API reference gives them.
        unsafe {
            let create: libloading::Symbol<'_, unsafe extern "C" fn(*mut Handle) -> Status> =
                lib.get(b"cublasCreate_v2\0").map_err(|e| e.to_string())?;
            let gemm_ex: GemmEx = *lib.get(b"cublasGemmEx\0").map_err(|e| e.to_string())?;
            let destroy = *lib.get(b"cublasDestroy_v2\0").map_err(|e| e.to_string())?;
            let mut handle: Handle = std::ptr::null_mut();
            let s = create(&mut handle);
            if s != 0 {
                return Err(format!("cublasCreate failed with status {s}"));
            }
            Ok(Cublas {
                handle,
                gemm_ex,
                destroy,
                _lib: lib,
            })
        }
    }

    /// Row-major `C[m×n] = A[m×k]·B[k×n]` (bf16 A and B, C of `c_type`), as the column-major
    /// product `Cᵀ = Bᵀ·Aᵀ`, on the legacy default stream.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
        &self,
        m: usize,
        n: usize,
        k: usize,
        a: u64,
        b: u64,
        c: u64,
        c_type: c_int,
    ) -> Result<(), String> {
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: the pointers are device allocations of the stated sizes, alive for the call
        // (the caller synchronizes before freeing them).
        let s = unsafe {
            (self.gemm_ex)(
                self.handle,
                OP_N,
                OP_N,
                n as c_int,
                m as c_int,
                k as c_int,
                (&alpha as *const f32).cast(),
                b as *const c_void,
                R_16BF,
                n as c_int,
                a as *const c_void,
                R_16BF,
                k as c_int,
                (&beta as *const f32).cast(),
                c as *mut c_void,
                c_type,
                n as c_int,
                COMPUTE_32F,
                GEMM_DEFAULT,
            )
        };
        if s == 0 {
            Ok(())
        } else {
            Err(format!("cublasGemmEx failed with status {s}"))
        }
    }
}

impl Drop for Cublas {
    fn drop(&mut self) {
        // SAFETY: created in `load`, destroyed once.
        let _ = unsafe { (self.destroy)(self.handle) };
    }
}
