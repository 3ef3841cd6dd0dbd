/* The kernel both fake drivers run by name: `axpb(x, y, a, b)` writes y[i] = a * x[i] + b from
 * the launch's argument buffer as tilekit lays it out (x's pointer, size, stride; y's pointer,
 * size, stride; then the f32 `a` and the i32 `b`), so a wrong buffer gives wrong numbers. */
#include <stdint.h>

static void run_axpb(void **params) {
    float *x = (float *)(uintptr_t)*(uint64_t *)params[0];
    int xs = *(int *)params[2];
    float *y = (float *)(uintptr_t)*(uint64_t *)params[3];
    int yn = *(int *)params[4], ys = *(int *)params[5];
    float a = *(float *)params[6];
    int b = *(int *)params[7];
    for (int i = 0; i < yn; i++) y[i * ys] = a * x[i * xs] + (float)b;
}
