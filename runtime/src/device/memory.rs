//! [`Storage`]: the memory a tensor's elements live in, on one device (views share it), and how
//! views of host memory reach a launch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::{cuda, hip, DeviceView, LaunchArg};
use crate::error::Error;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;

/// Where a tensor's elements live; views share it.
#[derive(Clone, Debug)]
pub(crate) enum Storage {
    /// Host memory, for the cpu device and the emulator: values rounded to the dtype.
    Host(Arc<HostMemory>),
    Cuda(Arc<cuda::Buffer>),
    Hip(Arc<hip::Buffer>),
}

impl Storage {
    /// Host memory holding `values` of `dtype`, charged to the calling thread.
    pub(crate) fn host(dtype: ScalarType, values: Vec<f64>) -> Storage {
        Storage::Host(Arc::new(HostMemory::new(dtype, values)))
    }

    /// The calling thread's host memory: `(live bytes, peak bytes)`, the peak since the thread
    /// started or since [`Storage::reset_host_peak`] (see [`crate::tensor::MemoryStats`]).
    pub(crate) fn host_bytes() -> (usize, usize) {
        METER.with(|m| {
            (
                m.live.load(Ordering::Relaxed),
                m.peak.load(Ordering::Relaxed),
            )
        })
    }

    /// Starts the calling thread's peak over from what is live now.
    pub(crate) fn reset_host_peak() {
        METER.with(|m| {
            m.peak
                .store(m.live.load(Ordering::Relaxed), Ordering::Relaxed)
        });
    }

    /// Counts one copy of a tensor's elements from the device to the host, made by the calling
    /// thread (see [`crate::Tensor::device_to_host_copies`]).
    pub(crate) fn count_read_back() {
        READ_BACKS.with(|c| c.set(c.get() + 1));
    }

    /// The device-to-host copies the calling thread has made.
    pub(crate) fn read_backs() -> u64 {
        READ_BACKS.with(std::cell::Cell::get)
    }

    /// Whether both are the same memory (views of one tensor's storage).
    pub(crate) fn same(&self, other: &Storage) -> bool {
        match (self, other) {
            (Storage::Host(a), Storage::Host(b)) => Arc::ptr_eq(a, b),
            (Storage::Cuda(a), Storage::Cuda(b)) => Arc::ptr_eq(a, b),
            (Storage::Hip(a), Storage::Hip(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    pub(crate) fn device_name(&self) -> String {
        match self {
            Storage::Host(_) => "cpu".into(),
            Storage::Cuda(b) => format!("cuda:{}", b.ctx.ordinal),
            Storage::Hip(b) => format!("hip:{}", b.ctx.ordinal),
        }
    }
}

/// The elements of one host-memory tensor, charged to the thread that allocated them (at the
/// dtype's size, as a GPU would hold them) until the last view is gone.
#[derive(Debug)]
pub(crate) struct HostMemory {
    values: Mutex<Vec<f64>>,
    bytes: usize,
    meter: Arc<Meter>,
}

impl HostMemory {
    pub(crate) fn new(dtype: ScalarType, values: Vec<f64>) -> HostMemory {
        let bytes = values.len() * dtype.size_bytes() as usize;
        let meter = METER.with(Arc::clone);
        let live = meter.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        meter.peak.fetch_max(live, Ordering::Relaxed);
        HostMemory {
            values: Mutex::new(values),
            bytes,
            meter,
        }
    }
}

impl std::ops::Deref for HostMemory {
    type Target = Mutex<Vec<f64>>;
    fn deref(&self) -> &Mutex<Vec<f64>> {
        &self.values
    }
}

impl Drop for HostMemory {
    fn drop(&mut self) {
        self.meter.live.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Live and peak bytes of one thread's host-memory tensors.
#[derive(Debug, Default)]
struct Meter {
    live: AtomicUsize,
    peak: AtomicUsize,
}

thread_local! {
    // Per thread, so that tests running side by side in one process (each on its own thread)
    // do not see each other's tensors.
    static METER: Arc<Meter> = Arc::new(Meter::default());
    // Per thread for the same reason.
    static READ_BACKS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Host-memory views among a launch's arguments, swapped for host tensors holding their
/// elements while a device runs the kernel (the interpreter reads host tensors; a GPU copies
/// them over and back), then written back into the memory they view.
pub(crate) struct HostViews(Vec<(usize, DeviceView)>);

impl HostViews {
    /// Replaces every view of host memory in `args` by a host tensor of its elements.
    pub(crate) fn take(args: &mut [LaunchArg]) -> Result<HostViews, Error> {
        let mut views = Vec::new();
        for (i, a) in args.iter_mut().enumerate() {
            let LaunchArg::Device(v) = a else { continue };
            let Storage::Host(h) = &v.storage else {
                continue;
            };
            let values: Vec<f64> = {
                let h = h.lock().unwrap_or_else(|e| e.into_inner());
                element_positions(v)
                    .map(|p| h.get(p).copied().unwrap_or(f64::NAN))
                    .collect()
            };
            let t = HostTensor::new(v.dtype, &v.shape, &values)?;
            let LaunchArg::Device(v) = std::mem::replace(a, LaunchArg::Host(t)) else {
                unreachable!("matched above")
            };
            views.push((i, v));
        }
        Ok(HostViews(views))
    }

    /// Puts the views back into `args`; when `written` (the launch succeeded), first copies the
    /// elements of the writable ones (`writable[i]`) into their memory.
    pub(crate) fn give_back(self, args: &mut [LaunchArg], writable: &[bool], written: bool) {
        for (i, v) in self.0 {
            let Some(a) = args.get_mut(i) else { continue };
            if let (true, Some(true), LaunchArg::Host(t), Storage::Host(h)) =
                (written, writable.get(i).copied(), &*a, &v.storage)
            {
                let mut h = h.lock().unwrap_or_else(|e| e.into_inner());
                for (p, x) in element_positions(&v).zip(t.to_vec()) {
                    if let Some(to) = h.get_mut(p) {
                        *to = x;
                    }
                }
            }
            *a = LaunchArg::Device(v);
        }
    }
}

/// The storage positions of a view's elements, row-major.
pub(crate) fn element_positions(v: &DeviceView) -> impl Iterator<Item = usize> + '_ {
    positions(&v.shape, &v.strides, v.offset)
}

/// The storage positions of the elements of the view `offset + Σ index·strides` over `shape`,
/// row-major.
pub(crate) fn positions<'a>(
    shape: &'a [usize],
    strides: &'a [usize],
    offset: usize,
) -> impl Iterator<Item = usize> + 'a {
    let n: usize = shape.iter().product();
    let mut index = vec![0usize; shape.len()];
    (0..n).map(move |_| {
        let p = offset + index.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>();
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
        p
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Stats {
        live_bytes: usize,
        peak_bytes: usize,
    }

    fn stats() -> Stats {
        let (live_bytes, peak_bytes) = Storage::host_bytes();
        Stats {
            live_bytes,
            peak_bytes,
        }
    }

    #[test]
    fn live_bytes_follow_the_last_view_and_the_peak_stays_until_reset() {
        let before = stats();
        let a = Storage::host(ScalarType::BF16, vec![1.5; 1000]);
        let view = a.clone();
        let b = Storage::host(ScalarType::F32, vec![2.0; 300]);
        let both = stats();
        assert_eq!(both.live_bytes, before.live_bytes + 2000 + 1200);
        assert!(both.peak_bytes >= both.live_bytes);
        drop(a);
        assert_eq!(stats().live_bytes, both.live_bytes, "a view still holds it");
        drop(view);
        drop(b);
        let after = stats();
        assert_eq!(after.live_bytes, before.live_bytes);
        assert_eq!(after.peak_bytes, both.peak_bytes);
        Storage::reset_host_peak();
        assert_eq!(stats().peak_bytes, before.live_bytes);
        // Another thread's tensors are charged to that thread.
        std::thread::spawn(|| Storage::host(ScalarType::F32, vec![0.0; 1 << 20]))
            .join()
            .unwrap();
        assert_eq!(stats().peak_bytes, before.live_bytes);
    }
}
