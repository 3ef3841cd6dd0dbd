/* A fake NVIDIA driver for tilekit's tests: the subset of the CUDA driver API the `cuda` device
 * calls, with "device" memory in host memory and two kernels whose effect it knows by name, so
 * the runtime's path (driver loading, context, memory, module loading with the JIT log, parameter
 * marshalling, launch errors, events) runs on a machine without a GPU.
 *
 * Kernels: `axpb(x, y, a, b)` writes y[i] = a * x[i] + b from the ABI's pointer/size/stride
 * values; `explode` fails its launch. A kernel whose name starts with `trap_` fails a
 * device_assert as a GPU would: the launch succeeds, the last block's last thread writes the
 * assert record (layout: tilekit_ir::assert_record; message: the PTX's `device_assert:`
 * comment) where the module's __tilekit_assert_record points, and every later synchronization
 * or copy reports the sticky CUDA_ERROR_LAUNCH_FAILED. A module whose text contains
 * FAKE_REJECT is refused with a JIT log. With FAKE_CUDA_NOOP set, other kernels launch and do
 * nothing. Each load and launch prints one line on stderr for the test to read. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fake_driver/axpb.h"

typedef int CUresult;
typedef int CUdevice;
typedef uint64_t CUdeviceptr;
/* A loaded module: the address its __tilekit_assert_record holds, then its PTX text. */
typedef struct { uint64_t assert_record; char text[]; } Module;
typedef struct { char name[64]; Module *module; } Func;

#define OK 0
#define ERR_INVALID_VALUE 1
#define ERR_INVALID_PTX 218
#define ERR_NOT_FOUND 500
#define ERR_LAUNCH_FAILED 719

static int ctx_token;
/* The sticky error of a trapped context (0: none). */
static CUresult sticky;

CUresult cuInit(unsigned flags) { (void)flags; return OK; }
CUresult cuDriverGetVersion(int *v) { *v = 12080; return OK; }
CUresult cuDeviceGetCount(int *n) { *n = 1; return OK; }
CUresult cuDeviceGet(CUdevice *d, int ordinal) { if (ordinal != 0) return ERR_INVALID_VALUE; *d = 0; return OK; }
CUresult cuDevicePrimaryCtxRetain(void **ctx, CUdevice d) { (void)d; *ctx = &ctx_token; return OK; }
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d) { (void)d; return OK; }
CUresult cuCtxSetCurrent(void *ctx) { return ctx == &ctx_token ? OK : ERR_INVALID_VALUE; }
CUresult cuCtxSynchronize(void) { return sticky; }
CUresult cuDeviceGetName(char *name, int len, CUdevice d) { (void)d; snprintf(name, len, "Fake H100"); return OK; }
CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice d) { (void)d; *bytes = (size_t)80 << 30; return OK; }
CUresult cuDeviceGetAttribute(int *v, int attrib, CUdevice d) {
    (void)d;
    switch (attrib) {
    case 75: *v = 9; return OK;      /* compute capability major */
    case 76: *v = 0; return OK;      /* minor */
    case 16: *v = 132; return OK;    /* multiprocessors */
    case 97: *v = 232448; return OK; /* max shared memory per block, opt-in */
    default: *v = 0; return OK;
    }
}

CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n) { void *m = calloc(1, n); if (!m) return 2; *p = (CUdeviceptr)(uintptr_t)m; return OK; }
CUresult cuMemFree_v2(CUdeviceptr p) { free((void *)(uintptr_t)p); return OK; }
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) { memcpy((void *)(uintptr_t)dst, src, n); return OK; }
CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n) { if (sticky) return sticky; memcpy(dst, (void *)(uintptr_t)src, n); return OK; }
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, void *s) { (void)s; memcpy((void *)(uintptr_t)dst, (void *)(uintptr_t)src, n); return OK; }
CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) { memset((void *)(uintptr_t)dst, v, n); return OK; }
/* Mapped pinned memory: the fake's device addresses are host addresses, so the mapping is the
 * identity; flag 2 is CU_MEMHOSTALLOC_DEVICEMAP, without which there is no device pointer. */
static void *mapped;
CUresult cuMemHostAlloc(void **p, size_t n, unsigned flags) { *p = malloc(n); if (!*p) return 2; if (flags & 2) mapped = *p; memset(*p, 0xab, n); return OK; }
CUresult cuMemHostGetDevicePointer_v2(CUdeviceptr *d, void *p, unsigned flags) { if (flags || p != mapped) return ERR_INVALID_VALUE; *d = (CUdeviceptr)(uintptr_t)p; return OK; }
CUresult cuMemFreeHost(void *p) { free(p); return OK; }

CUresult cuModuleLoadDataEx(void **module, const void *image, unsigned n, int *options, void **values) {
    const char *text = image;
    const char *target = strstr(text, ".target ");
    fprintf(stderr, "fake-cuda: load %.14s\n", target ? target : "(no .target)");
    if (strstr(text, "FAKE_REJECT")) {
        for (unsigned i = 0; i < n; i++) {
            if (options[i] == 5) { /* CU_JIT_ERROR_LOG_BUFFER; its size follows as option 6 */
                size_t size = 0;
                for (unsigned j = 0; j < n; j++) if (options[j] == 6) size = (size_t)(uintptr_t)values[j];
                if (size) snprintf((char *)values[i], size, "ptxas fatal: fake rejection of line 7");
            }
        }
        return ERR_INVALID_PTX;
    }
    Module *m = calloc(1, sizeof(Module) + strlen(text) + 1);
    strcpy(m->text, text);
    *module = m;
    return OK;
}
CUresult cuModuleUnload(void *module) { free(module); return OK; }
CUresult cuModuleGetFunction(void **f, void *module, const char *name) {
    char entry[80];
    snprintf(entry, sizeof entry, ".entry %s(", name);
    if (!strstr(((Module *)module)->text, entry)) return ERR_NOT_FOUND;
    Func *fn = calloc(1, sizeof(Func));
    snprintf(fn->name, sizeof fn->name, "%s", name);
    fn->module = module;
    *f = fn;
    return OK;
}
/* Only the assert record's 64-bit address is a module global tilekit looks up. */
CUresult cuModuleGetGlobal_v2(CUdeviceptr *p, size_t *bytes, void *module, const char *name) {
    Module *m = module;
    char decl[96];
    snprintf(decl, sizeof decl, ".u64 %s", name);
    if (strcmp(name, "__tilekit_assert_record") != 0 || !strstr(m->text, decl)) return ERR_NOT_FOUND;
    *p = (CUdeviceptr)(uintptr_t)&m->assert_record;
    *bytes = sizeof m->assert_record;
    fprintf(stderr, "fake-cuda: global %s\n", name);
    return OK;
}

/* What a failed device_assert leaves before its trap (little-endian u32 words: state, block
 * x/y/z, thread, message length; the message from byte 32, at most 96 bytes). */
static void write_assert_record(Func *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx) {
    uint32_t *r = (uint32_t *)(uintptr_t)fn->module->assert_record;
    if (!r) return;
    const char *at = strstr(fn->module->text, "device_assert: ");
    const char *msg = at ? at + strlen("device_assert: ") : "";
    size_t n = strcspn(msg, "\n");
    if (n > 96) n = 96;
    memset(r, 0, 128);
    r[0] = 1;
    r[1] = gx - 1; r[2] = gy - 1; r[3] = gz - 1;
    r[4] = bx - 1;
    r[5] = (uint32_t)n;
    memcpy((char *)r + 32, msg, n);
}
CUresult cuFuncSetAttribute(void *f, int attrib, int value) { (void)f; (void)attrib; (void)value; return OK; }

CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                        unsigned bz, unsigned shared, void *stream, void **params, void **extra) {
    (void)stream; (void)extra;
    Func *fn = f;
    fprintf(stderr, "fake-cuda: launch %s grid %u,%u,%u block %u,%u,%u shared %u\n", fn->name, gx, gy,
            gz, bx, by, bz, shared);
    if (sticky) return sticky;
    if (strcmp(fn->name, "explode") == 0) return ERR_LAUNCH_FAILED;
    if (strncmp(fn->name, "trap_", 5) == 0) {
        write_assert_record(fn, gx, gy, gz, bx);
        sticky = ERR_LAUNCH_FAILED;
        return OK;
    }
    /* FAKE_CUDA_NOOP: every other kernel "runs" without computing (the benchmark's smoke test). */
    if (strcmp(fn->name, "axpb") != 0 && getenv("FAKE_CUDA_NOOP")) return OK;
    if (strcmp(fn->name, "axpb") == 0) {
        run_axpb(params);
        return OK;
    }
    return ERR_INVALID_VALUE;
}

/* cuTensorMapEncodeTiled: checks the documented rules (CUDA Driver API, "Tensor Map Object
 * Management") and writes a map the test can read: "FAKETMAP", the address, then the rank, data
 * type and swizzle. Prints its arguments. */
CUresult cuTensorMapEncodeTiled(uint64_t *map, int dtype, unsigned rank, void *addr,
                                const uint64_t *dims, const uint64_t *strides, const unsigned *box,
                                const unsigned *estrides, int interleave, int swizzle, int l2,
                                int oob) {
    static const unsigned size[] = {1, 2, 4, 4, 8, 8, 2, 4, 8, 2, 4, 4, 4};
    if (((uintptr_t)map) % 64 != 0 || rank < 1 || rank > 5 || dtype < 0 || dtype > 12)
        return ERR_INVALID_VALUE;
    if (((uintptr_t)addr) % 16 != 0) return ERR_INVALID_VALUE;
    char line[512];
    int at = snprintf(line, sizeof line, "fake-cuda: tensor map dtype %d rank %u dims", dtype, rank);
    for (unsigned i = 0; i < rank; i++) {
        if (dims[i] == 0 || dims[i] > ((uint64_t)1 << 32)) return ERR_INVALID_VALUE;
        at += snprintf(line + at, sizeof line - at, "%s%llu", i ? "," : " ", (unsigned long long)dims[i]);
    }
    at += snprintf(line + at, sizeof line - at, " strides");
    for (unsigned i = 0; i + 1 < rank; i++) {
        if (strides[i] % 16 != 0 || strides[i] >= ((uint64_t)1 << 40)) return ERR_INVALID_VALUE;
        at += snprintf(line + at, sizeof line - at, "%s%llu", i ? "," : " ", (unsigned long long)strides[i]);
    }
    at += snprintf(line + at, sizeof line - at, " box");
    for (unsigned i = 0; i < rank; i++) {
        if (box[i] == 0 || box[i] > 256 || estrides[i] == 0 || estrides[i] > 8) return ERR_INVALID_VALUE;
        at += snprintf(line + at, sizeof line - at, "%s%u", i ? "," : " ", box[i]);
    }
    unsigned inner = box[0] * size[dtype];
    if (interleave == 0 && inner % 16 != 0) return ERR_INVALID_VALUE;
    if (interleave == 0 && swizzle > 0 && inner > (16u << swizzle)) return ERR_INVALID_VALUE;
    fprintf(stderr, "%s interleave %d swizzle %d l2 %d oob %d\n", line, interleave, swizzle, l2, oob);
    memset(map, 0, 128);
    memcpy(map, "FAKETMAP", 8);
    map[1] = (uint64_t)(uintptr_t)addr;
    map[2] = rank | (uint64_t)dtype << 8 | (uint64_t)swizzle << 16;
    return OK;
}

CUresult cuStreamSynchronize(void *s) { (void)s; return sticky; }
CUresult cuEventCreate(void **e, unsigned flags) { (void)flags; *e = malloc(1); return OK; }
CUresult cuEventRecord(void *e, void *s) { (void)e; (void)s; return OK; }
CUresult cuEventSynchronize(void *e) { (void)e; return OK; }
CUresult cuEventElapsedTime(float *ms, void *a, void *b) { (void)a; (void)b; *ms = 1.5f; return OK; }
CUresult cuEventDestroy_v2(void *e) { free(e); return OK; }

CUresult cuGetErrorName(CUresult r, const char **s) {
    switch (r) {
    case ERR_INVALID_PTX: *s = "CUDA_ERROR_INVALID_PTX"; return OK;
    case ERR_LAUNCH_FAILED: *s = "CUDA_ERROR_LAUNCH_FAILED"; return OK;
    case ERR_NOT_FOUND: *s = "CUDA_ERROR_NOT_FOUND"; return OK;
    case ERR_INVALID_VALUE: *s = "CUDA_ERROR_INVALID_VALUE"; return OK;
    default: *s = "CUDA_ERROR_UNKNOWN"; return OK;
    }
}
CUresult cuGetErrorString(CUresult r, const char **s) {
    (void)r;
    *s = "an error reported by the fake driver";
    return OK;
}
