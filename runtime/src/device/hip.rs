//! The `hip` device: AMD's HIP runtime (`libamdhip64.so`), loaded the first time a HIP device is
//! asked for. Without ROCm it is [`Error::NoDriver`] ("no HIP runtime found") and everything else
//! works.
//!
//! A small layer over the HIP module API as the HIP Runtime API reference documents it
//! (`hipInit`, `hipGetDeviceCount`, `hipSetDevice`, `hipMalloc`/`hipFree`,
//! `hipMemcpyHtoD`/`hipMemcpyDtoH`, `hipModuleLoadData`, `hipModuleGetFunction`,
//! `hipModuleLaunchKernel`, streams and events). Every entry point returns `hipError_t`, 0 on
//! success. **It has never run on AMD hardware** (the project has none): it is written from the
//! documentation, and `docs/GPU.md` says so.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::fmt;
use std::sync::{Arc, OnceLock};

use libloading::Library;

use super::Error;

type HipError = c_int;
type Ptr = *mut c_void;

/// The HIP entry points tilekit uses, resolved once from `libamdhip64`.
struct Api {
    init: unsafe extern "C" fn(c_uint) -> HipError,
    get_device_count: unsafe extern "C" fn(*mut c_int) -> HipError,
    set_device: unsafe extern "C" fn(c_int) -> HipError,
    device_get_name: unsafe extern "C" fn(*mut c_char, c_int, c_int) -> HipError,
    malloc: unsafe extern "C" fn(*mut Ptr, usize) -> HipError,
    free: unsafe extern "C" fn(Ptr) -> HipError,
    memcpy_htod: unsafe extern "C" fn(Ptr, *const c_void, usize) -> HipError,
    memcpy_dtoh: unsafe extern "C" fn(*mut c_void, Ptr, usize) -> HipError,
    memset: unsafe extern "C" fn(Ptr, c_int, usize) -> HipError,
    memcpy_dtod: unsafe extern "C" fn(Ptr, Ptr, usize) -> HipError,
    module_load_data: unsafe extern "C" fn(*mut Ptr, *const c_void) -> HipError,
    module_get_function: unsafe extern "C" fn(*mut Ptr, Ptr, *const c_char) -> HipError,
    module_unload: unsafe extern "C" fn(Ptr) -> HipError,
    #[allow(clippy::type_complexity)]
    module_launch_kernel: unsafe extern "C" fn(
        Ptr,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        Ptr,
        *mut *mut c_void,
        *mut *mut c_void,
    ) -> HipError,
    stream_create: unsafe extern "C" fn(*mut Ptr) -> HipError,
    stream_synchronize: unsafe extern "C" fn(Ptr) -> HipError,
    stream_destroy: unsafe extern "C" fn(Ptr) -> HipError,
    event_create: unsafe extern "C" fn(*mut Ptr) -> HipError,
    event_record: unsafe extern "C" fn(Ptr, Ptr) -> HipError,
    event_synchronize: unsafe extern "C" fn(Ptr) -> HipError,
    event_elapsed_time: unsafe extern "C" fn(*mut f32, Ptr, Ptr) -> HipError,
    event_destroy: unsafe extern "C" fn(Ptr) -> HipError,
    device_synchronize: unsafe extern "C" fn() -> HipError,
    get_error_string: unsafe extern "C" fn(HipError) -> *const c_char,
    _lib: Library,
}

/// Library names tried in order (ROCm installs the versioned name; the unversioned one comes
/// with the development package).
const LIBRARIES: [&str; 3] = ["libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.7"];

fn api() -> Result<&'static Api, Error> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load)
        .as_ref()
        .map_err(|message| Error::NoDriver {
            what: "HIP runtime".into(),
            library: message.clone(),
        })
}

fn load() -> Result<Api, String> {
    let lib = LIBRARIES
        .iter()
        // SAFETY: loading the HIP runtime runs its initializers, which is what using it means.
        .find_map(|name| unsafe { Library::new(name) }.ok())
        .ok_or_else(|| format!("{} (ROCm's HIP runtime)", LIBRARIES.join(" or ")))?;
    macro_rules! sym {
        ($name:literal) => {
            // SAFETY: the symbol has the signature the HIP Runtime API reference gives it.
            *unsafe { lib.get($name) }.map_err(|e| {
                format!(
                    "libamdhip64 without `{}`: {e}",
                    String::from_utf8_lossy(&$name[..$name.len() - 1])
                )
            })?
        };
    }
    Ok(Api {
        init: sym!(b"hipInit\0"),
        get_device_count: sym!(b"hipGetDeviceCount\0"),
        set_device: sym!(b"hipSetDevice\0"),
        device_get_name: sym!(b"hipDeviceGetName\0"),
        malloc: sym!(b"hipMalloc\0"),
        free: sym!(b"hipFree\0"),
        memcpy_htod: sym!(b"hipMemcpyHtoD\0"),
        memcpy_dtoh: sym!(b"hipMemcpyDtoH\0"),
        memset: sym!(b"hipMemset\0"),
        memcpy_dtod: sym!(b"hipMemcpyDtoD\0"),
        module_load_data: sym!(b"hipModuleLoadData\0"),
        module_get_function: sym!(b"hipModuleGetFunction\0"),
        module_unload: sym!(b"hipModuleUnload\0"),
        module_launch_kernel: sym!(b"hipModuleLaunchKernel\0"),
        stream_create: sym!(b"hipStreamCreate\0"),
        stream_synchronize: sym!(b"hipStreamSynchronize\0"),
        stream_destroy: sym!(b"hipStreamDestroy\0"),
        event_create: sym!(b"hipEventCreate\0"),
        event_record: sym!(b"hipEventRecord\0"),
        event_synchronize: sym!(b"hipEventSynchronize\0"),
        event_elapsed_time: sym!(b"hipEventElapsedTime\0"),
        event_destroy: sym!(b"hipEventDestroy\0"),
        device_synchronize: sym!(b"hipDeviceSynchronize\0"),
        get_error_string: sym!(b"hipGetErrorString\0"),
        _lib: lib,
    })
}

/// Turns a `hipError_t` into a result naming the call.
fn check(api: &Api, call: &'static str, code: HipError) -> Result<(), Error> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: hipGetErrorString returns a static string for any code.
    let text = unsafe { (api.get_error_string)(code) };
    let message = if text.is_null() {
        format!("hipError_t {code}")
    } else {
        // SAFETY: non-null, NUL-terminated, static.
        format!(
            "hipError_t {code}: {}",
            unsafe { CStr::from_ptr(text) }.to_string_lossy()
        )
    };
    Err(Error::Driver {
        device: "hip".into(),
        call: call.into(),
        message,
    })
}

/// Whether the HIP runtime can be loaded on this machine.
pub fn runtime_present() -> bool {
    api().is_ok()
}

/// One HIP device.
pub struct Context {
    pub(crate) ordinal: usize,
    pub(crate) name: String,
    api: &'static Api,
    /// Kernels loaded on this device, by kernel name and Tile IR hash.
    pub(crate) loaded: std::sync::Mutex<HashMap<String, Arc<super::Loaded<Function>>>>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hip:{} ({})", self.ordinal, self.name)
    }
}

impl Context {
    pub(crate) fn open(ordinal: usize) -> Result<Arc<Context>, Error> {
        let api = api()?;
        // SAFETY: plain calls with valid out-pointers.
        unsafe {
            check(api, "hipInit", (api.init)(0))?;
            let mut count = 0;
            check(api, "hipGetDeviceCount", (api.get_device_count)(&mut count))?;
            if ordinal >= count.max(0) as usize {
                return Err(Error::NoSuchDevice {
                    device: format!("hip:{ordinal}"),
                    count: count.max(0) as usize,
                });
            }
            let mut name = [0 as c_char; 256];
            check(
                api,
                "hipDeviceGetName",
                (api.device_get_name)(name.as_mut_ptr(), name.len() as c_int, ordinal as c_int),
            )?;
            let name = CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned();
            Ok(Arc::new(Context {
                ordinal,
                name,
                api,
                loaded: Default::default(),
            }))
        }
    }

    /// Makes this device current on the calling thread.
    pub(crate) fn bind(&self) -> Result<(), Error> {
        // SAFETY: a plain call.
        check(self.api, "hipSetDevice", unsafe {
            (self.api.set_device)(self.ordinal as c_int)
        })
    }

    pub(crate) fn synchronize(&self) -> Result<(), Error> {
        self.bind()?;
        // SAFETY: a plain call.
        check(self.api, "hipDeviceSynchronize", unsafe {
            (self.api.device_synchronize)()
        })
    }
}

/// Device memory, freed on drop.
pub(crate) struct Buffer {
    pub(crate) ptr: Ptr,
    pub(crate) bytes: usize,
    pub(crate) ctx: Arc<Context>,
}

// SAFETY: a device address is plain data; the HIP runtime is thread-safe.
unsafe impl Send for Buffer {}
unsafe impl Sync for Buffer {}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes on {:?}", self.bytes, self.ctx)
    }
}

impl Buffer {
    pub(crate) fn alloc(ctx: &Arc<Context>, bytes: usize) -> Result<Buffer, Error> {
        ctx.bind()?;
        let mut ptr: Ptr = std::ptr::null_mut();
        // SAFETY: a valid out-pointer.
        check(ctx.api, "hipMalloc", unsafe {
            (ctx.api.malloc)(&mut ptr, bytes.max(1))
        })?;
        Ok(Buffer {
            ptr,
            bytes,
            ctx: ctx.clone(),
        })
    }

    pub(crate) fn upload(&self, data: &[u8]) -> Result<(), Error> {
        if data.len() > self.bytes {
            return Err(past_the_buffer(data.len(), 0, self.bytes));
        }
        self.ctx.bind()?;
        // SAFETY: the buffer holds at least `data.len()` bytes (checked above).
        check(self.ctx.api, "hipMemcpyHtoD", unsafe {
            (self.ctx.api.memcpy_htod)(self.ptr, data.as_ptr().cast(), data.len())
        })
    }

    pub(crate) fn download(&self) -> Result<Vec<u8>, Error> {
        let mut out = vec![0u8; self.bytes];
        self.ctx.bind()?;
        // SAFETY: `out` has the buffer's size.
        check(self.ctx.api, "hipMemcpyDtoH", unsafe {
            (self.ctx.api.memcpy_dtoh)(out.as_mut_ptr().cast(), self.ptr, self.bytes)
        })?;
        Ok(out)
    }

    pub(crate) fn fill_bytes(&self, value: u8) -> Result<(), Error> {
        self.ctx.bind()?;
        // SAFETY: writes exactly the buffer's bytes.
        check(self.ctx.api, "hipMemset", unsafe {
            (self.ctx.api.memset)(self.ptr, c_int::from(value), self.bytes)
        })
    }
}

impl Buffer {
    /// Copies `bytes` from `src` at byte `src_at` to this buffer at byte `at` (device to device).
    pub(crate) fn copy_from(
        &self,
        at: usize,
        src: &Buffer,
        src_at: usize,
        bytes: usize,
    ) -> Result<(), Error> {
        let fits = |at: usize, len: usize| at.checked_add(bytes).is_some_and(|end| end <= len);
        if !fits(at, self.bytes) {
            return Err(past_the_buffer(bytes, at, self.bytes));
        }
        if !fits(src_at, src.bytes) {
            return Err(past_the_buffer(bytes, src_at, src.bytes));
        }
        self.ctx.bind()?;
        // SAFETY: both ranges lie inside their buffers (checked above).
        check(self.ctx.api, "hipMemcpyDtoD", unsafe {
            (self.ctx.api.memcpy_dtod)(
                self.ptr.cast::<u8>().add(at).cast(),
                src.ptr.cast::<u8>().add(src_at).cast(),
                bytes,
            )
        })
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: allocated by hipMalloc, freed once.
            let _ = unsafe { (self.ctx.api.free)(self.ptr) };
        }
    }
}

/// A HIP stream (the null stream when not owned).
pub struct Stream {
    pub(crate) raw: Ptr,
    pub(crate) ctx: Arc<Context>,
    owned: bool,
}

// SAFETY: stream handles are usable from any thread.
unsafe impl Send for Stream {}
unsafe impl Sync for Stream {}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream {:p} on {:?}", self.raw, self.ctx)
    }
}

impl Stream {
    pub(crate) fn default_of(ctx: &Arc<Context>) -> Stream {
        Stream {
            raw: std::ptr::null_mut(),
            ctx: ctx.clone(),
            owned: false,
        }
    }

    pub(crate) fn create(ctx: &Arc<Context>) -> Result<Stream, Error> {
        ctx.bind()?;
        let mut raw: Ptr = std::ptr::null_mut();
        // SAFETY: a valid out-pointer.
        check(ctx.api, "hipStreamCreate", unsafe {
            (ctx.api.stream_create)(&mut raw)
        })?;
        Ok(Stream {
            raw,
            ctx: ctx.clone(),
            owned: true,
        })
    }

    pub(crate) fn synchronize(&self) -> Result<(), Error> {
        self.ctx.bind()?;
        // SAFETY: a live stream.
        check(self.ctx.api, "hipStreamSynchronize", unsafe {
            (self.ctx.api.stream_synchronize)(self.raw)
        })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.owned && self.ctx.bind().is_ok() {
            // SAFETY: created by `create`, destroyed once.
            let _ = unsafe { (self.ctx.api.stream_destroy)(self.raw) };
        }
    }
}

/// A timing event.
pub(crate) struct Event {
    raw: Ptr,
    ctx: Arc<Context>,
}

// SAFETY: as for streams.
unsafe impl Send for Event {}
unsafe impl Sync for Event {}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event on {:?}", self.ctx)
    }
}

impl Event {
    pub(crate) fn create(ctx: &Arc<Context>) -> Result<Event, Error> {
        ctx.bind()?;
        let mut raw: Ptr = std::ptr::null_mut();
        // SAFETY: a valid out-pointer.
        check(ctx.api, "hipEventCreate", unsafe {
            (ctx.api.event_create)(&mut raw)
        })?;
        Ok(Event {
            raw,
            ctx: ctx.clone(),
        })
    }

    pub(crate) fn record(&self, stream: &Stream) -> Result<(), Error> {
        // SAFETY: live handles.
        check(self.ctx.api, "hipEventRecord", unsafe {
            (self.ctx.api.event_record)(self.raw, stream.raw)
        })
    }

    pub(crate) fn elapsed_ms(&self, end: &Event) -> Result<f32, Error> {
        let mut ms = 0f32;
        // SAFETY: live handles, a valid out-pointer.
        unsafe {
            check(
                self.ctx.api,
                "hipEventSynchronize",
                (self.ctx.api.event_synchronize)(end.raw),
            )?;
            check(
                self.ctx.api,
                "hipEventElapsedTime",
                (self.ctx.api.event_elapsed_time)(&mut ms, self.raw, end.raw),
            )?;
        }
        Ok(ms)
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: created by `create`, destroyed once.
        let _ = unsafe { (self.ctx.api.event_destroy)(self.raw) };
    }
}

/// A kernel loaded from a code object (`.hsaco`).
pub(crate) struct Function {
    module: Ptr,
    func: Ptr,
    ctx: Arc<Context>,
}

// SAFETY: module and function handles are usable from any thread.
unsafe impl Send for Function {}
unsafe impl Sync for Function {}

impl fmt::Debug for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel on {:?}", self.ctx)
    }
}

impl Function {
    pub(crate) fn load(
        ctx: &Arc<Context>,
        kernel: &str,
        code_object: &[u8],
    ) -> Result<Function, Error> {
        ctx.bind()?;
        let jit = |log: String| Error::Jit {
            kernel: kernel.into(),
            device: format!("{ctx:?}"),
            log,
        };
        let mut module: Ptr = std::ptr::null_mut();
        // SAFETY: the image is a code object in memory that outlives the call (HIP copies it).
        check(ctx.api, "hipModuleLoadData", unsafe {
            (ctx.api.module_load_data)(&mut module, code_object.as_ptr().cast())
        })
        .map_err(|e| jit(e.to_string()))?;
        let name = CString::new(kernel).map_err(|_| jit("a NUL byte in the name".into()))?;
        let mut func: Ptr = std::ptr::null_mut();
        // SAFETY: a live module and a NUL-terminated name.
        if let Err(e) = check(ctx.api, "hipModuleGetFunction", unsafe {
            (ctx.api.module_get_function)(&mut func, module, name.as_ptr())
        }) {
            // SAFETY: loaded above, unloaded once.
            let _ = unsafe { (ctx.api.module_unload)(module) };
            return Err(jit(e.to_string()));
        }
        Ok(Function {
            module,
            func,
            ctx: ctx.clone(),
        })
    }

    pub(crate) fn launch(
        &self,
        stream: &Stream,
        grid: [u32; 3],
        block: [u32; 3],
        dynamic_shared: u32,
        params: &[super::cuda::ParamValue],
    ) -> Result<(), Error> {
        let mut slots: Vec<*mut c_void> = params
            .iter()
            .map(|p| p.as_ptr().cast_mut().cast())
            .collect();
        self.ctx.bind()?;
        // SAFETY: every slot points at a value of the type the entry declares, alive for the
        // call; HIP copies them.
        check(self.ctx.api, "hipModuleLaunchKernel", unsafe {
            (self.ctx.api.module_launch_kernel)(
                self.func,
                grid[0],
                grid[1],
                grid[2],
                block[0],
                block[1],
                block[2],
                dynamic_shared,
                stream.raw,
                slots.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        })
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: loaded by `load`, unloaded once.
            let _ = unsafe { (self.ctx.api.module_unload)(self.module) };
        }
    }
}

/// A copy of `bytes` bytes at byte `at` of a buffer of `len` bytes that would leave it (the
/// tensor code never asks for one; this is the guard that keeps the driver call in bounds).
fn past_the_buffer(bytes: usize, at: usize, len: usize) -> Error {
    Error::Tensor {
        message: format!("a copy of {bytes} bytes at byte {at} of a buffer of {len} bytes"),
    }
}
