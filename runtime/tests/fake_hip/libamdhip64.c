/* A fake HIP runtime for tilekit's tests: the subset of the HIP API the `hip` device calls, with
 * "device" memory in host memory and the kernel `axpb` run by name from its arguments (see
 * ../fake_cuda/libcuda.c), so the runtime's HIP path runs on a machine without ROCm or an AMD GPU.
 * A code object must be an ELF file holding the kernel's descriptor symbol `<name>.kd`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fake_driver/axpb.h"

typedef int hipError_t;
typedef struct { char name[64]; } Func;
typedef struct { unsigned char *image; size_t size; } Module;

static int current = -1;

hipError_t hipInit(unsigned flags) { (void)flags; return 0; }
hipError_t hipGetDeviceCount(int *n) { *n = 1; return 0; }
hipError_t hipSetDevice(int d) { if (d != 0) return 101; current = d; return 0; }
hipError_t hipDeviceGetName(char *name, int len, int d) { (void)d; snprintf(name, len, "Fake MI300X"); return 0; }
hipError_t hipMalloc(void **p, size_t n) { if (current != 0) return 709; *p = calloc(1, n); return *p ? 0 : 2; }
hipError_t hipFree(void *p) { free(p); return 0; }
hipError_t hipMemcpyHtoD(void *dst, const void *src, size_t n) { memcpy(dst, src, n); return 0; }
hipError_t hipMemcpyDtoH(void *dst, const void *src, size_t n) { memcpy(dst, src, n); return 0; }
hipError_t hipMemset(void *dst, int v, size_t n) { memset(dst, v, n); return 0; }
hipError_t hipMemcpyDtoD(void *dst, const void *src, size_t n) { memcpy(dst, src, n); return 0; }
hipError_t hipModuleLoadData(void **module, const void *image) {
    const unsigned char *b = image;
    if (memcmp(b, "\x7f" "ELF", 4) != 0) return 200; /* hipErrorInvalidImage */
    fprintf(stderr, "fake-hip: load ELF class %u\n", b[4]);
    /* The fake cannot know the image's size from the API: ELF64 section headers end the file. */
    uint64_t shoff; uint16_t shentsize, shnum;
    memcpy(&shoff, b + 0x28, 8); memcpy(&shentsize, b + 0x3a, 2); memcpy(&shnum, b + 0x3c, 2);
    Module *m = malloc(sizeof(Module));
    m->size = shoff + (size_t)shentsize * shnum;
    m->image = malloc(m->size);
    memcpy(m->image, b, m->size);
    *module = m;
    return 0;
}
hipError_t hipModuleUnload(void *module) { Module *m = module; free(m->image); free(m); return 0; }
hipError_t hipModuleGetFunction(void **f, void *module, const char *name) {
    Module *m = module;
    char kd[80];
    size_t n = (size_t)snprintf(kd, sizeof kd, "%s.kd", name);
    for (size_t i = 0; i + n <= m->size; i++) {
        if (memcmp(m->image + i, kd, n) == 0) {
            Func *fn = calloc(1, sizeof(Func));
            snprintf(fn->name, sizeof fn->name, "%s", name);
            *f = fn;
            return 0;
        }
    }
    return 500; /* hipErrorNotFound */
}
hipError_t hipModuleLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                                 unsigned by, unsigned bz, unsigned shared, void *stream,
                                 void **params, void **extra) {
    (void)stream; (void)extra;
    Func *fn = f;
    fprintf(stderr, "fake-hip: launch %s grid %u,%u,%u block %u,%u,%u shared %u\n", fn->name, gx,
            gy, gz, bx, by, bz, shared);
    if (strcmp(fn->name, "axpb") != 0) return 98; /* hipErrorInvalidDeviceFunction */
    run_axpb(params);
    return 0;
}
hipError_t hipStreamCreate(void **s) { *s = malloc(1); return 0; }
hipError_t hipStreamSynchronize(void *s) { (void)s; return 0; }
hipError_t hipStreamDestroy(void *s) { free(s); return 0; }
hipError_t hipEventCreate(void **e) { *e = malloc(1); return 0; }
hipError_t hipEventRecord(void *e, void *s) { (void)e; (void)s; return 0; }
hipError_t hipEventSynchronize(void *e) { (void)e; return 0; }
hipError_t hipEventElapsedTime(float *ms, void *a, void *b) { (void)a; (void)b; *ms = 2.5f; return 0; }
hipError_t hipEventDestroy(void *e) { free(e); return 0; }
hipError_t hipDeviceSynchronize(void) { return 0; }
const char *hipGetErrorString(hipError_t e) {
    switch (e) {
    case 98: return "hipErrorInvalidDeviceFunction";
    case 200: return "hipErrorInvalidImage";
    case 500: return "hipErrorNotFound";
    default: return "an error reported by the fake HIP runtime";
    }
}
