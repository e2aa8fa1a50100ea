// cuda_emu.h: the CUDA execution model on the host, so the kernels in kernels/*.cu can be
// compiled by the host C++17 compiler and run in tests on machines without a GPU.
//
// Model
// - A launch runs its blocks one after another on the calling host thread. Each CUDA
//   thread of a block is a fiber (ucontext) with a stack of its own; the fibers take turns
//   cooperatively: one runs until it reaches a barrier (__syncthreads, a warp exchange) or
//   returns, then the next. Context switches are function calls, not kernel-scheduled
//   thread wake-ups, so a launch of a few hundred threads costs little.
// - A fiber is made once per stack (makecontext) and then parked between kernel threads;
//   switches are _setjmp/_longjmp, which unlike swapcontext leave the signal mask alone
//   and so make no system call (swapcontext's sigprocmask was ~90 % of emulated time).
// - blockIdx, threadIdx, blockDim, gridDim are thread_local variables, set for each fiber
//   as it is resumed.
// - `__shared__` expands to `static`: a shared array is one object for the whole program.
//   That is exactly per-block storage because (a) blocks of a launch run one at a time and
//   (b) launches are serialised by a global mutex (the Rust test harness runs tests in
//   parallel). Like CUDA shared memory its contents are undefined at block start (in
//   practice: whatever the previous block left) -- kernels must not rely on zeroing.
//   Dynamic shared memory: declare it with NASRANK_DYNAMIC_SHARED(type, name), which is
//   `extern __shared__ type name[]` under CUDA and a pointer to a per-launch arena of
//   `shared_bytes` here.
// - __syncthreads() is a barrier over the block's threads that have not returned: a thread
//   leaving the kernel drops out of the barrier, as on Volta and later.
// - Warp intrinsics (__shfl*_sync, __ballot_sync) exchange values through per-warp slots
//   between two warp barriers. They must be reached by every live thread of the warp (the
//   full-warp, convergent use all kernels here make); the mask only filters the result.
// - atomicAdd is a compare-and-swap loop on the host word (GCC/Clang __atomic builtins).
// - A kernel that waits for another thread without a barrier (a spin on memory) would spin
//   for ever here; none does (CUDA does not promise such progress either).
//
// Everything is header-only (inline functions and variables) so each kernel family is a
// separate translation unit and they link together.
#pragma once

// Fortified longjmp refuses to jump to another stack, which is what a fiber switch is.
#ifdef _FORTIFY_SOURCE
#undef _FORTIFY_SOURCE
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csetjmp>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <ucontext.h>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define NASRANK_DYNAMIC_SHARED(type, name) type *name = reinterpret_cast<type *>(emu::dynamic_shared())

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
constexpr int warpSize = 32;

using std::max;
using std::min;
using std::sqrt;
inline float rsqrtf(float v) { return 1.0f / std::sqrt(v); }
inline double rsqrt(double v) { return 1.0 / std::sqrt(v); }
template <class T> inline T __ldg(const T *p) { return *p; }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline unsigned __float_as_uint(float v) {
    unsigned u;
    std::memcpy(&u, &v, sizeof u);
    return u;
}
inline float __uint_as_float(unsigned u) {
    float v;
    std::memcpy(&v, &u, sizeof v);
    return v;
}
// Round-to-nearest double arithmetic that the compiler may not contract into an FMA (the
// host build has no FMA contraction to begin with).
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __longlong_as_double(long long u) {
    double v;
    std::memcpy(&v, &u, sizeof v);
    return v;
}

namespace emu {

inline void yield_to_next_fiber();

// A reusable barrier for a changing number of participants: `drop` removes the caller for
// the rest of the block (a thread that returned from the kernel). Waiting yields to the
// other fibers of the block until the last participant arrives.
class Barrier {
  public:
    void reset(unsigned count) {
        expected_ = count;
        arrived_ = 0;
    }
    void arrive_and_wait() {
        const unsigned long long gen = generation_;
        if (++arrived_ >= expected_) {
            release();
        } else {
            while (generation_ == gen) yield_to_next_fiber();
        }
    }
    void drop() {
        --expected_;
        if (expected_ > 0 && arrived_ >= expected_) release();
    }

  private:
    void release() {
        arrived_ = 0;
        ++generation_;
    }
    unsigned expected_ = 0, arrived_ = 0;
    unsigned long long generation_ = 0;
};

// One warp's exchange slots and barrier.
struct Warp {
    Barrier barrier;
    unsigned long long slot[32];
    bool live[32]; // lane has not returned from the kernel
};

// The state of the running block, shared by its threads.
struct Block {
    Barrier sync;                // __syncthreads
    std::vector<Warp> warps;     // per-warp exchange
    std::vector<unsigned char> dynamic_shared;
};

inline thread_local Block *tl_block = nullptr;
inline thread_local unsigned tl_lane = 0, tl_warp = 0;

inline void *dynamic_shared() { return tl_block->dynamic_shared.data(); }

inline unsigned linear_thread() {
    return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}

inline Warp &my_warp() { return tl_block->warps[tl_warp]; }

// Every value a warp exchanges travels as 64 raw bits.
template <class T> inline unsigned long long to_bits(T v) {
    static_assert(sizeof(T) <= 8, "warp exchange of values up to 8 bytes");
    unsigned long long b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <class T> inline T from_bits(unsigned long long b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}

// Publishes `v`, waits for the warp, reads lane `src` (own value if `src` is not a live
// lane), and waits again so that the slots may be reused.
template <class T> inline T exchange(T v, int src) {
    Warp &w = my_warp();
    w.slot[tl_lane] = to_bits(v);
    w.barrier.arrive_and_wait();
    T out = (src >= 0 && src < 32 && w.live[src]) ? from_bits<T>(w.slot[src]) : v;
    w.barrier.arrive_and_wait();
    return out;
}

inline std::mutex &launch_mutex() {
    static std::mutex m;
    return m;
}

// One fiber: its stack and, while it is parked or waiting at a barrier, where it resumes.
struct Fiber {
    jmp_buf resume;
    std::unique_ptr<char[]> stack;
};

// The fibers of the running block and the context of the launch that runs them.
struct Fibers {
    jmp_buf launcher;
    std::vector<std::unique_ptr<Fiber>> fibers; // kept across launches (reused)
    std::vector<bool> done;
    unsigned current = 0;
    const std::function<void()> *kernel = nullptr;
    dim3 block;
};
inline thread_local Fibers tl_fibers;

// Per-fiber stack: kernels keep a few scalars and small register tiles.
constexpr size_t kFiberStack = 256 * 1024;

inline void enter_thread(unsigned t) {
    const dim3 block = tl_fibers.block;
    threadIdx = uint3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
    tl_lane = t % 32;
    tl_warp = t / 32;
}

// Saves where the running fiber is and returns to the launch loop, which resumes the next
// unfinished fiber.
inline void yield_to_next_fiber() {
    Fibers &f = tl_fibers;
    if (_setjmp(f.fibers[f.current]->resume) == 0) _longjmp(f.launcher, 1);
}

// Runs one CUDA thread of the block to its end.
inline void run_thread() {
    Fibers &f = tl_fibers;
    (*f.kernel)();
    // Leaving the kernel: stop counting in this block's barriers.
    Warp &w = my_warp();
    // Lanes still exchanging read this lane's value as absent from now on.
    w.live[tl_lane] = false;
    w.barrier.drop();
    tl_block->sync.drop();
    f.done[f.current] = true;
}

// The body of fiber t for the rest of the program: park, run the thread it is resumed
// for, park again.
inline void fiber_main() {
    Fibers &f = tl_fibers;
    const unsigned t = f.current;
    for (;;) {
        if (_setjmp(f.fibers[t]->resume) == 0) _longjmp(f.launcher, 1);
        run_thread();
    }
}

// The context calls live in functions of their own: they return twice, which would make
// the compiler distrust the launch loop's locals.
__attribute__((noinline)) inline void make_fiber(unsigned t) {
    Fibers &f = tl_fibers;
    f.fibers.push_back(std::make_unique<Fiber>());
    Fiber &fiber = *f.fibers.back();
    fiber.stack.reset(new char[kFiberStack]);
    ucontext_t c;
    getcontext(&c);
    c.uc_stack.ss_sp = fiber.stack.get();
    c.uc_stack.ss_size = kFiberStack;
    c.uc_link = nullptr; // fiber_main never returns
    makecontext(&c, fiber_main, 0);
    f.current = t;
    // The new fiber parks at once and jumps back here.
    if (_setjmp(f.launcher) == 0) setcontext(&c);
}

__attribute__((noinline)) inline void resume_fiber(unsigned t) {
    Fibers &f = tl_fibers;
    f.current = t;
    enter_thread(t);
    if (_setjmp(f.launcher) == 0) _longjmp(f.fibers[t]->resume, 1);
}

// Runs `kernel` over the grid: a fiber per CUDA thread, blocks in order.
inline void launch(dim3 grid, dim3 block, unsigned shared_bytes, const std::function<void()> &kernel) {
    std::lock_guard<std::mutex> serial(launch_mutex());
    const unsigned nthreads = block.x * block.y * block.z;
    const unsigned long long nblocks = 1ull * grid.x * grid.y * grid.z;
    if (nthreads == 0 || nblocks == 0) return;
    const unsigned nwarps = (nthreads + 31) / 32;
    Block state;
    state.warps = std::vector<Warp>(nwarps);
    state.dynamic_shared.assign(shared_bytes, 0);
    Fibers &f = tl_fibers;
    f.kernel = &kernel;
    f.block = block;
    while (f.fibers.size() < nthreads) make_fiber(unsigned(f.fibers.size()));
    blockDim = block;
    gridDim = grid;
    tl_block = &state;
    for (unsigned long long b = 0; b < nblocks; ++b) {
        blockIdx = uint3(b % grid.x, (b / grid.x) % grid.y, b / (1ull * grid.x * grid.y));
        state.sync.reset(nthreads);
        for (unsigned w = 0; w < nwarps; ++w) {
            const unsigned lanes = std::min(32u, nthreads - 32 * w);
            state.warps[w].barrier.reset(lanes);
            for (unsigned l = 0; l < 32; ++l) state.warps[w].live[l] = l < lanes;
        }
        f.done.assign(nthreads, false);
        // Round-robin until every fiber has returned; each runs to its next barrier.
        for (unsigned left = nthreads; left > 0;) {
            left = 0;
            for (unsigned t = 0; t < nthreads; ++t) {
                if (f.done[t]) continue;
                resume_fiber(t);
                left += !f.done[t];
            }
        }
    }
    tl_block = nullptr;
}

} // namespace emu

inline void __syncthreads() { emu::tl_block->sync.arrive_and_wait(); }

inline unsigned __activemask() {
    emu::Warp &w = emu::my_warp();
    unsigned m = 0;
    for (unsigned l = 0; l < 32; ++l) m |= unsigned(w.live[l]) << l;
    return m;
}

inline unsigned __ballot_sync(unsigned mask, int predicate) {
    emu::Warp &w = emu::my_warp();
    w.slot[emu::tl_lane] = predicate != 0;
    w.barrier.arrive_and_wait();
    unsigned bits = 0;
    for (unsigned l = 0; l < 32; ++l)
        if (w.live[l] && w.slot[l]) bits |= 1u << l;
    w.barrier.arrive_and_wait();
    return bits & mask;
}

template <class T> inline T __shfl_sync(unsigned, T v, int src, int width = warpSize) {
    const int lane = int(emu::tl_lane);
    return emu::exchange(v, (lane & ~(width - 1)) + (src & (width - 1)));
}

template <class T> inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = warpSize) {
    const int lane = int(emu::tl_lane);
    const bool inside = (lane & (width - 1)) + int(delta) < width;
    return emu::exchange(v, inside ? lane + int(delta) : -1);
}

template <class T> inline T __shfl_up_sync(unsigned, T v, unsigned delta, int width = warpSize) {
    const int lane = int(emu::tl_lane);
    const bool inside = (lane & (width - 1)) >= int(delta);
    return emu::exchange(v, inside ? lane - int(delta) : -1);
}

template <class T> inline T __shfl_xor_sync(unsigned, T v, int lane_mask, int width = warpSize) {
    const int lane = int(emu::tl_lane);
    const int src = lane ^ lane_mask;
    const bool inside = (src & ~(width - 1)) == (lane & ~(width - 1));
    return emu::exchange(v, inside ? src : -1);
}

namespace emu {
template <class T, class Word> inline T atomic_add_cas(T *addr, T v) {
    static_assert(sizeof(T) == sizeof(Word), "word size");
    Word *word = reinterpret_cast<Word *>(addr);
    Word old = __atomic_load_n(word, __ATOMIC_RELAXED);
    for (;;) {
        const T updated = from_bits<T>(old) + v;
        Word next = 0;
        std::memcpy(&next, &updated, sizeof(T));
        if (__atomic_compare_exchange_n(word, &old, next, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
            return from_bits<T>(old);
    }
}
} // namespace emu

inline float atomicAdd(float *a, float v) { return emu::atomic_add_cas<float, unsigned>(a, v); }
inline double atomicAdd(double *a, double v) { return emu::atomic_add_cas<double, unsigned long long>(a, v); }
inline unsigned atomicAdd(unsigned *a, unsigned v) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); }
inline int atomicAdd(int *a, int v) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); }
inline unsigned long long atomicAdd(unsigned long long *a, unsigned long long v) {
    return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);
}
