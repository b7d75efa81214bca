/* anchor.c: the host Linux doing what scripts/bench times in the guest (touch fresh
 * anonymous pages, fork and write, exit), in TSC cycles read with rdtsc around each
 * operation, printed as one JSON object. Built and run by scripts/bench with the
 * machine's gcc: gcc -O2 -o anchor anchor.c
 *
 * Each figure is taken the way the guest program (kernel/user/src/bin/bench.rs) takes
 * its own, so the two compare: the median of one write per page for faults, the slope
 * between a small and a SLOPE_MIB larger task for fork and exit. Transparent huge pages
 * are turned off on every region: the guest has 4 KiB pages only. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#define PAGE 4096UL
#define MIB (1UL << 20)
/* Pages of fault samples, as the guest (1 MiB). */
#define FAULT_PAGES 256
/* The extra memory for the fork and exit slopes, as the guest. */
#define SLOPE_MIB 4
/* Repetitions of fork and exit timings (the median is printed). */
#define REPEATS 9
/* Memory touched once and released before timing: the host's own first touch of its
 * RAM is costly under nested virtualisation, as the guest's is. */
#define WARM_MIB 256
/* How long the TSC rate is measured against CLOCK_MONOTONIC. */
#define TSC_SAMPLE_NS 200000000L

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_u64);
    return v[n / 2];
}

static char *map_anon(size_t len, int shared) {
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    madvise(p, len, MADV_NOHUGEPAGE);
    return p;
}

/* Writes one word per page, timing each write; returns the median. */
static uint64_t time_writes(volatile char *p, size_t pages) {
    uint64_t samples[FAULT_PAGES];
    for (size_t i = 0; i < pages; i++) {
        uint64_t t = __rdtsc();
        p[i * PAGE] = (char)i;
        samples[i] = __rdtsc() - t;
    }
    return median(samples, pages);
}

static void touch(volatile char *p, size_t len) {
    for (size_t off = 0; off < len; off += PAGE)
        p[off] = 1;
}

static uint64_t tsc_hz(void) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    uint64_t t = __rdtsc();
    struct timespec d = {0, TSC_SAMPLE_NS};
    nanosleep(&d, NULL);
    uint64_t cycles = __rdtsc() - t;
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    return (uint64_t)(cycles / s);
}

static uint64_t time_fork(void) {
    uint64_t samples[REPEATS];
    for (int i = 0; i < REPEATS; i++) {
        uint64_t t = __rdtsc();
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        samples[i] = __rdtsc() - t;
        waitpid(pid, NULL, 0);
    }
    return median(samples, REPEATS);
}

/* From the child's last instruction before _exit to the parent's return from waitpid,
 * for a child that touched `mib` MiB of fresh memory first. */
static uint64_t time_exit(size_t mib, volatile uint64_t *mark) {
    uint64_t samples[REPEATS];
    for (int i = 0; i < REPEATS; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            if (mib) {
                char *p = map_anon(mib * MIB, 0);
                touch(p, mib * MIB);
            }
            *mark = __rdtsc();
            _exit(0);
        }
        waitpid(pid, NULL, 0);
        samples[i] = __rdtsc() - *mark;
    }
    return median(samples, REPEATS);
}

int main(void) {
    char *warm = map_anon(WARM_MIB * MIB, 0);
    touch(warm, WARM_MIB * MIB);
    munmap(warm, WARM_MIB * MIB);

    uint64_t hz = tsc_hz();
    char *region = map_anon(FAULT_PAGES * PAGE, 0);
    uint64_t demand_zero = time_writes(region, FAULT_PAGES);

    /* COW copy: the child writes while the parent still maps every page. */
    volatile uint64_t *shared = (volatile uint64_t *)map_anon(PAGE, 1);
    pid_t pid = fork();
    if (pid == 0) {
        shared[0] = time_writes(region, FAULT_PAGES);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    uint64_t cow_copy = shared[0];
    /* Count 1: the child exited without writing, the parent's pages are its own again
     * but still write-protected; the fault only makes them writable. */
    char *again = map_anon(FAULT_PAGES * PAGE, 0);
    touch(again, FAULT_PAGES * PAGE);
    pid = fork();
    if (pid == 0)
        _exit(0);
    waitpid(pid, NULL, 0);
    uint64_t cow_count1 = time_writes(again, FAULT_PAGES);

    uint64_t exit_small = time_exit(0, shared);
    uint64_t exit_large = time_exit(SLOPE_MIB, shared);
    uint64_t fork_small = time_fork();
    char *more = map_anon(SLOPE_MIB * MIB, 0);
    touch(more, SLOPE_MIB * MIB);
    uint64_t fork_large = time_fork();

    printf("{\"tsc_hz\": %llu, \"demand_zero_fault\": %llu, \"cow_copy_fault\": %llu, "
           "\"cow_count1_fault\": %llu, \"fork_base\": %llu, \"fork_per_mib\": %llu, "
           "\"exit_base\": %llu, \"exit_per_mib\": %llu}\n",
           (unsigned long long)hz, (unsigned long long)demand_zero,
           (unsigned long long)cow_copy, (unsigned long long)cow_count1,
           (unsigned long long)fork_small,
           (unsigned long long)((fork_large > fork_small ? fork_large - fork_small : 0) / SLOPE_MIB),
           (unsigned long long)exit_small,
           (unsigned long long)((exit_large > exit_small ? exit_large - exit_small : 0) / SLOPE_MIB));
    return 0;
}
