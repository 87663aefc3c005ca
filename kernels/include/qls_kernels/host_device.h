// QLS_HD: marks a function shared by host and device code (__host__ __device__ under nvcc, plain inline elsewhere).
#pragma once
#if defined(__CUDACC__)
#define QLS_HD __host__ __device__ __forceinline__
#else
#define QLS_HD inline
#endif
