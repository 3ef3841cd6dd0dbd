//! The `cuda` device: NVIDIA's driver API through `cudarc`, with `libcuda` loaded the first time
//! a CUDA device is asked for. Building needs no CUDA; a machine without the driver gets
//! [`Error::NoDriver`] and the cpu device keeps working.
//!
//! Everything here is a thin, checked layer over the driver API (CUDA Driver API reference,
//! modules "Context Management", "Memory Management", "Module Management", "Execution
//! Control", "Stream Management", "Event Management"): a retained primary context per device,
//! linear device memory, modules loaded from PTX with the JIT's error log, launches with
//! explicit parameter buffers, streams and events.

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::fmt;
use std::sync::{Arc, Mutex};

use cudarc::driver::{result, sys};

use super::Error;
use crate::ir::assert_record;

/// The driver's name and message for a result code.
fn describe(e: result::DriverError) -> String {
    let name = e.error_name().map(|s| s.to_string_lossy().into_owned());
    let text = e.error_string().map(|s| s.to_string_lossy().into_owned());
    match (name, text) {
        (Ok(n), Ok(t)) => format!("{n}: {t}"),
        (Ok(n), Err(_)) => n,
        _ => format!("CUresult {}", e.0 as i32),
    }
}

fn driver(call: &'static str) -> impl Fn(result::DriverError) -> Error {
    move |e| Error::Driver {
        device: "cuda".into(),
        call: call.into(),
        message: describe(e),
    }
}

/// Whether `libcuda` can be loaded on this machine.
pub fn driver_present() -> bool {
    // SAFETY: only tries to open the library; nothing is called through it.
    unsafe { sys::is_culib_present() }
}

/// How many CUDA devices the driver sees (0 without a driver).
pub fn device_count() -> usize {
    if !driver_present() {
        return 0;
    }
    if result::init().is_err() {
        return 0;
    }
    result::device::get_count().map_or(0, |n| n.max(0) as usize)
}

/// One CUDA device: its retained primary context and what the launcher needs to know.
pub struct Context {
    pub(crate) ordinal: usize,
    dev: sys::CUdevice,
    ctx: sys::CUcontext,
    pub(crate) name: String,
    /// Compute capability (major, minor).
    pub(crate) cc: (i32, i32),
    pub(crate) multiprocessors: u32,
    /// Shared memory a block may opt in to (bytes).
    pub(crate) max_shared_optin: u32,
    pub(crate) total_memory: usize,
    /// Kernels loaded into this context, by their code's key.
    pub(crate) loaded: Mutex<HashMap<String, Arc<super::Loaded<Function>>>>,
}

// SAFETY: the driver API is thread-safe; a context handle may be made current on any thread,
// which every entry point here does before calling into the driver.
unsafe impl Send for Context {}
unsafe impl Sync for Context {}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cuda:{} ({}, sm_{}{})",
            self.ordinal, self.name, self.cc.0, self.cc.1
        )
    }
}

impl Context {
    /// Opens device `ordinal`: loads the driver, initializes it, retains the primary context.
    pub(crate) fn open(ordinal: usize) -> Result<Arc<Context>, Error> {
        if !driver_present() {
            return Err(Error::NoDriver {
                what: "CUDA driver".into(),
                library: "libcuda.so (the NVIDIA driver)".into(),
            });
        }
        result::init().map_err(driver("cuInit"))?;
        let count = result::device::get_count().map_err(driver("cuDeviceGetCount"))?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::NoSuchDevice {
                device: format!("cuda:{ordinal}"),
                count: count.max(0) as usize,
            });
        }
        let dev = result::device::get(ordinal as i32).map_err(driver("cuDeviceGet"))?;
        // SAFETY: `dev` is a device handle the driver just returned.
        let ctx = unsafe { result::primary_ctx::retain(dev) }
            .map_err(driver("cuDevicePrimaryCtxRetain"))?;
        // SAFETY: `ctx` was just retained.
        unsafe { result::ctx::set_current(ctx) }.map_err(driver("cuCtxSetCurrent"))?;
        let attr = |a: sys::CUdevice_attribute| -> Result<i32, Error> {
            // SAFETY: `dev` is valid and `a` is an attribute of the enum.
            unsafe { result::device::get_attribute(dev, a) }.map_err(driver("cuDeviceGetAttribute"))
        };
        use sys::CUdevice_attribute as A;
        let cc = (
            attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        );
        let multiprocessors = attr(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?.max(0) as u32;
        let max_shared_optin =
            attr(A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?.max(0) as u32;
        let name = result::device::get_name(dev).map_err(driver("cuDeviceGetName"))?;
        // SAFETY: `dev` is valid.
        let total_memory =
            unsafe { result::device::total_mem(dev) }.map_err(driver("cuDeviceTotalMem"))?;
        Ok(Arc::new(Context {
            ordinal,
            dev,
            ctx,
            name,
            cc,
            multiprocessors,
            max_shared_optin,
            total_memory,
            loaded: Mutex::new(HashMap::new()),
        }))
    }

    /// Makes this context current on the calling thread.
    pub(crate) fn bind(&self) -> Result<(), Error> {
        // SAFETY: the context stays retained while `self` lives.
        unsafe { result::ctx::set_current(self.ctx) }.map_err(driver("cuCtxSetCurrent"))
    }

    /// The code target for this device: `sm_90a` on compute capability 9.0, `sm_80` PTX (which
    /// the driver compiles forward) on every other 8.x or later device.
    pub(crate) fn target(&self) -> Result<&'static str, Error> {
        match self.cc {
            (9, 0) => Ok("sm_90a"),
            (major, _) if major >= 8 => Ok("sm_80"),
            (major, minor) => Err(Error::UnsupportedDevice {
                device: format!("cuda:{} ({})", self.ordinal, self.name),
                message: format!(
                    "compute capability {major}.{minor}; tilekit's kernels need 8.0 (Ampere) or newer"
                ),
            }),
        }
    }

    /// Blocks until all work on every stream of this context is done; a kernel's fault shows
    /// here.
    pub(crate) fn synchronize(&self) -> Result<(), Error> {
        self.bind()?;
        result::ctx::synchronize().map_err(driver("cuCtxSynchronize"))
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        if let Ok(map) = self.loaded.get_mut() {
            map.clear();
        }
        // SAFETY: balances the retain in `open`.
        let _ = unsafe { result::primary_ctx::release(self.dev) };
    }
}

/// Linear device memory, freed on drop.
pub(crate) struct Buffer {
    pub(crate) ptr: sys::CUdeviceptr,
    pub(crate) bytes: usize,
    pub(crate) ctx: Arc<Context>,
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes on {:?}", self.bytes, self.ctx)
    }
}

impl Buffer {
    /// `bytes` of device memory (at least one byte is allocated, so every buffer has an
    /// address).
    pub(crate) fn alloc(ctx: &Arc<Context>, bytes: usize) -> Result<Buffer, Error> {
        ctx.bind()?;
        // SAFETY: a plain allocation in the current context.
        let ptr = unsafe { result::malloc_sync(bytes.max(1)) }.map_err(|e| Error::Driver {
            device: format!("cuda:{}", ctx.ordinal),
            call: "cuMemAlloc".into(),
            message: format!("{} ({bytes} bytes)", describe(e)),
        })?;
        Ok(Buffer {
            ptr,
            bytes,
            ctx: ctx.clone(),
        })
    }

    /// Copies `data` to the start of the buffer (synchronous).
    pub(crate) fn upload(&self, data: &[u8]) -> Result<(), Error> {
        if data.len() > self.bytes {
            return Err(past_the_buffer(data.len(), 0, self.bytes));
        }
        self.ctx.bind()?;
        // SAFETY: the buffer holds at least `data.len()` bytes (checked above).
        unsafe { result::memcpy_htod_sync(self.ptr, data) }.map_err(driver("cuMemcpyHtoD"))
    }

    /// Copies the buffer's bytes to the host (synchronous: waits for earlier work on blocking
    /// streams).
    pub(crate) fn download(&self) -> Result<Vec<u8>, Error> {
        let mut out = vec![0u8; self.bytes];
        self.ctx.bind()?;
        // SAFETY: `out` has exactly the buffer's size.
        unsafe { result::memcpy_dtoh_sync(&mut out, self.ptr) }.map_err(driver("cuMemcpyDtoH"))?;
        Ok(out)
    }

    /// Sets every byte to `value` (synchronous).
    pub(crate) fn fill_bytes(&self, value: u8) -> Result<(), Error> {
        self.ctx.bind()?;
        // SAFETY: writes exactly the buffer's bytes.
        unsafe { result::memset_d8_sync(self.ptr, value, self.bytes) }.map_err(driver("cuMemsetD8"))
    }
}

impl Buffer {
    /// Copies `bytes` from `src` at byte `src_at` to this buffer at byte `at`, on `stream`.
    pub(crate) fn copy_from(
        &self,
        at: usize,
        src: &Buffer,
        src_at: usize,
        bytes: usize,
        stream: &Stream,
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
        unsafe {
            result::memcpy_dtod_async(
                self.ptr + at as u64,
                src.ptr + src_at as u64,
                bytes,
                stream.raw,
            )
        }
        .map_err(driver("cuMemcpyDtoDAsync"))
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: `ptr` came from `cuMemAlloc` in this context and is freed once.
            let _ = unsafe { result::free_sync(self.ptr) };
        }
    }
}

/// A stream: work on it runs in order; it synchronizes with the legacy default stream.
pub struct Stream {
    pub(crate) raw: sys::CUstream,
    pub(crate) ctx: Arc<Context>,
    owned: bool,
}

// SAFETY: stream handles may be used from any thread with their context current.
unsafe impl Send for Stream {}
unsafe impl Sync for Stream {}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.owned {
            write!(f, "stream {:p} on {:?}", self.raw, self.ctx)
        } else {
            write!(f, "the default stream of {:?}", self.ctx)
        }
    }
}

impl Stream {
    /// The legacy default stream.
    pub(crate) fn default_of(ctx: &Arc<Context>) -> Stream {
        Stream {
            raw: result::stream::null(),
            ctx: ctx.clone(),
            owned: false,
        }
    }

    /// A new stream (blocking with respect to the legacy default stream).
    pub(crate) fn create(ctx: &Arc<Context>) -> Result<Stream, Error> {
        ctx.bind()?;
        let raw = result::stream::create(result::stream::StreamKind::Default)
            .map_err(driver("cuStreamCreate"))?;
        Ok(Stream {
            raw,
            ctx: ctx.clone(),
            owned: true,
        })
    }

    pub(crate) fn synchronize(&self) -> Result<(), Error> {
        self.ctx.bind()?;
        // SAFETY: the stream lives while `self` does.
        unsafe { result::stream::synchronize(self.raw) }.map_err(driver("cuStreamSynchronize"))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.owned && self.ctx.bind().is_ok() {
            // SAFETY: created by `create` and destroyed once.
            let _ = unsafe { result::stream::destroy(self.raw) };
        }
    }
}

/// A timing event.
pub(crate) struct Event {
    raw: sys::CUevent,
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
        let raw = result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT)
            .map_err(driver("cuEventCreate"))?;
        Ok(Event {
            raw,
            ctx: ctx.clone(),
        })
    }

    pub(crate) fn record(&self, stream: &Stream) -> Result<(), Error> {
        self.ctx.bind()?;
        // SAFETY: both handles live.
        unsafe { result::event::record(self.raw, stream.raw) }.map_err(driver("cuEventRecord"))
    }

    /// Milliseconds from `self` to `end`, waiting for `end` to complete.
    pub(crate) fn elapsed_ms(&self, end: &Event) -> Result<f32, Error> {
        self.ctx.bind()?;
        // SAFETY: both events live.
        unsafe {
            result::event::synchronize(end.raw).map_err(driver("cuEventSynchronize"))?;
            result::event::elapsed(self.raw, end.raw).map_err(driver("cuEventElapsedTime"))
        }
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: created by `create` and destroyed once.
            let _ = unsafe { result::event::destroy(self.raw) };
        }
    }
}

/// A kernel entry loaded from PTX.
pub(crate) struct Function {
    module: sys::CUmodule,
    func: sys::CUfunction,
    ctx: Arc<Context>,
    /// Where a failed `device_assert` of the kernel leaves its record (kernels with one).
    record: Option<MappedRecord>,
}

// SAFETY: module and function handles are usable from any thread with the context current.
unsafe impl Send for Function {}
unsafe impl Sync for Function {}

impl fmt::Debug for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel on {:?}", self.ctx)
    }
}

impl Function {
    /// Loads `ptx` and finds entry `kernel`; a PTX the driver rejects is [`Error::Jit`] with the
    /// JIT compiler's log.
    pub(crate) fn load(
        ctx: &Arc<Context>,
        kernel: &str,
        ptx: &str,
        dynamic_shared: u32,
    ) -> Result<Function, Error> {
        ctx.bind()?;
        let image = CString::new(ptx).map_err(|_| Error::Jit {
            kernel: kernel.into(),
            device: format!("{:?}", ctx),
            log: "the PTX contains a NUL byte".into(),
        })?;
        let mut error_log = vec![0u8; 1 << 14];
        let mut info_log = vec![0u8; 1 << 12];
        use sys::CUjit_option as J;
        let mut options = [
            J::CU_JIT_ERROR_LOG_BUFFER,
            J::CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
            J::CU_JIT_INFO_LOG_BUFFER,
            J::CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES,
        ];
        // The JIT options take their values in pointer-sized slots (sizes as integers).
        let mut values: [*mut c_void; 4] = [
            error_log.as_mut_ptr().cast(),
            error_log.len() as *mut c_void,
            info_log.as_mut_ptr().cast(),
            info_log.len() as *mut c_void,
        ];
        let mut module: sys::CUmodule = std::ptr::null_mut();
        // SAFETY: the image is NUL-terminated PTX; the option arrays match in length and the
        // log buffers outlive the call.
        let r = unsafe {
            sys::cuModuleLoadDataEx(
                &mut module,
                image.as_ptr().cast(),
                options.len() as u32,
                options.as_mut_ptr(),
                values.as_mut_ptr(),
            )
        };
        if r != sys::CUresult::CUDA_SUCCESS {
            let text = |b: &[u8]| {
                String::from_utf8_lossy(&b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())])
                    .trim()
                    .to_string()
            };
            let mut log = text(&error_log);
            if log.is_empty() {
                log = text(&info_log);
            }
            return Err(Error::Jit {
                kernel: kernel.into(),
                device: format!("{:?}", ctx),
                log: format!("{} — {log}", describe(result::DriverError(r))),
            });
        }
        let name = CString::new(kernel).map_err(|_| Error::Jit {
            kernel: kernel.into(),
            device: format!("{:?}", ctx),
            log: "the kernel name contains a NUL byte".into(),
        })?;
        // SAFETY: `module` was just loaded.
        let func = match unsafe { result::module::get_function(module, name) } {
            Ok(f) => f,
            Err(e) => {
                // SAFETY: loaded above, unloaded once.
                let _ = unsafe { result::module::unload(module) };
                return Err(Error::Jit {
                    kernel: kernel.into(),
                    device: format!("{:?}", ctx),
                    log: format!("the PTX has no entry `{kernel}`: {}", describe(e)),
                });
            }
        };
        let mut loaded = Function {
            module,
            func,
            ctx: ctx.clone(),
            record: None,
        };
        loaded.record = MappedRecord::attach(ctx, module)?;
        if dynamic_shared > 48 * 1024 {
            // SAFETY: `func` is a live function handle.
            unsafe {
                result::function::set_function_attribute(
                    func,
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    dynamic_shared as i32,
                )
            }
            .map_err(driver("cuFuncSetAttribute"))?;
        }
        Ok(loaded)
    }

    /// What a failed `device_assert` of this kernel wrote, once one has failed (read after the
    /// launch or a synchronization reported the trap).
    pub(crate) fn failed_assert(&self) -> Option<assert_record::AssertRecord> {
        self.record.as_ref().and_then(MappedRecord::read)
    }

    /// Launches with `params`, the values of the entry's arguments in order (each as its
    /// bytes, at its natural alignment).
    pub(crate) fn launch(
        &self,
        stream: &Stream,
        grid: [u32; 3],
        block: [u32; 3],
        dynamic_shared: u32,
        params: &[ParamValue],
    ) -> Result<(), result::DriverError> {
        let mut slots: Vec<*mut c_void> = params
            .iter()
            .map(|p| p.as_ptr().cast_mut().cast())
            .collect();
        if self.ctx.bind().is_err() {
            return Err(result::DriverError(
                sys::CUresult::CUDA_ERROR_INVALID_CONTEXT,
            ));
        }
        // SAFETY: every slot points at a value of the type the entry declares (checked by the
        // caller against the kernel's ABI), alive for the call; the driver copies them.
        unsafe {
            result::launch_kernel(
                self.func,
                (grid[0], grid[1], grid[2]),
                (block[0], block[1], block[2]),
                dynamic_shared,
                stream.raw,
                &mut slots,
            )
        }
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: the module was loaded by `load` and is unloaded once.
            let _ = unsafe { result::module::unload(self.module) };
        }
    }
}

/// Host-mapped pinned memory for a kernel's [`assert_record`], which its module's
/// [`assert_record::SYMBOL`] points at: the kernel writes it before it traps, and the host reads
/// it from its own mapping, since a trapped context's device memory can no longer be copied
/// (CUDA Driver API, "Memory Management": `cuMemHostAlloc` with `CU_MEMHOSTALLOC_DEVICEMAP`,
/// `cuMemHostGetDevicePointer`).
struct MappedRecord {
    host: *mut c_void,
    ctx: Arc<Context>,
}

impl MappedRecord {
    /// Maps a record for `module` when it declares [`assert_record::SYMBOL`] (else `None`)
    /// and stores the record's device address there.
    fn attach(ctx: &Arc<Context>, module: sys::CUmodule) -> Result<Option<MappedRecord>, Error> {
        let name = CString::new(assert_record::SYMBOL).expect("the symbol has no NUL byte");
        // SAFETY: `module` is a loaded module of the current context.
        let (slot, bytes) = match unsafe { result::module::get_global(module, name) } {
            Ok(found) => found,
            Err(e) if e.0 == sys::CUresult::CUDA_ERROR_NOT_FOUND => return Ok(None),
            Err(e) => return Err(driver("cuModuleGetGlobal")(e)),
        };
        if bytes != 8 {
            return Err(Error::Driver {
                device: format!("{ctx:?}"),
                call: "cuModuleGetGlobal".into(),
                message: format!(
                    "`{}` is {bytes} bytes; tilekit's kernels declare it as a 64-bit address",
                    assert_record::SYMBOL
                ),
            });
        }
        // SAFETY: a plain pinned allocation, mapped into the device's address space; it is
        // zeroed before anything reads it.
        let host =
            unsafe { result::malloc_host(assert_record::BYTES, sys::CU_MEMHOSTALLOC_DEVICEMAP) }
                .map_err(driver("cuMemHostAlloc"))?;
        let record = MappedRecord {
            host,
            ctx: ctx.clone(),
        };
        // SAFETY: `host` holds `BYTES` bytes.
        unsafe { std::ptr::write_bytes(host.cast::<u8>(), 0, assert_record::BYTES) };
        let mut device_address: sys::CUdeviceptr = 0;
        // SAFETY: `host` was allocated with CU_MEMHOSTALLOC_DEVICEMAP; flags must be 0.
        unsafe { sys::cuMemHostGetDevicePointer_v2(&mut device_address, host, 0) }
            .result()
            .map_err(driver("cuMemHostGetDevicePointer"))?;
        // SAFETY: `slot` is the 8-byte module global found above.
        unsafe { result::memcpy_htod_sync(slot, &device_address.to_le_bytes()) }
            .map_err(driver("cuMemcpyHtoD"))?;
        Ok(Some(record))
    }

    /// The record, once a lane has claimed it.
    fn read(&self) -> Option<assert_record::AssertRecord> {
        let mut bytes = [0u8; assert_record::BYTES];
        // SAFETY: `host` holds `BYTES` bytes for as long as `self` lives; the device has
        // finished writing (the caller reads after the trap was reported), and volatile reads
        // keep the compiler from assuming the bytes unchanged since the host zeroed them.
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = unsafe { std::ptr::read_volatile(self.host.cast::<u8>().add(i)) };
        }
        assert_record::decode(&bytes)
    }
}

impl Drop for MappedRecord {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: allocated by `cuMemHostAlloc` in `attach` and freed once.
            let _ = unsafe { result::free_host(self.host) };
        }
    }
}

/// One kernel argument's value as the entry takes it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ParamValue {
    U64(u64),
    I32(i32),
    U32(u32),
    I64(i64),
    F32(f32),
    U16(u16),
    U8(u8),
    /// A tensor map (`CUtensorMap`: 128 bytes, 64-byte aligned), passed by value.
    Map(crate::tensor_map::TensorMapImage),
}

impl ParamValue {
    pub(crate) fn as_ptr(&self) -> *const u8 {
        match self {
            ParamValue::U64(v) => (v as *const u64).cast(),
            ParamValue::I32(v) => (v as *const i32).cast(),
            ParamValue::U32(v) => (v as *const u32).cast(),
            ParamValue::I64(v) => (v as *const i64).cast(),
            ParamValue::F32(v) => (v as *const f32).cast(),
            ParamValue::U16(v) => (v as *const u16).cast(),
            ParamValue::U8(v) => (v as *const u8).cast(),
            ParamValue::Map(m) => m.0.as_ptr(),
        }
    }
}

/// Describes a driver error (for launch failures reported by the caller).
pub(crate) fn describe_error(e: result::DriverError) -> String {
    describe(e)
}

/// A copy of `bytes` bytes at byte `at` of a buffer of `len` bytes that would leave it (the
/// tensor code never asks for one; this is the guard that keeps the driver call in bounds).
fn past_the_buffer(bytes: usize, at: usize, len: usize) -> Error {
    Error::Tensor {
        message: format!("a copy of {bytes} bytes at byte {at} of a buffer of {len} bytes"),
    }
}
