/* The AVX2 instructions the kernels are made of, alone and in pairs: how many a cycle this CPU
 * retires when nothing depends on anything (independent registers), so that a pair that takes
 * longer than its parts alone shares their execution pipes. The cycle is measured by a chain of
 * dependent integer adds (one a cycle on every x86-64). Last, the exact mode's Q4_K weight vector
 * (kernels/matmul_avx2.c step_k_dot: codes widened from memory, a mask or a shift, a conversion,
 * an FMA to dequantize, one to accumulate with x from memory, the scales broadcast) as 4 rows x
 * 64 columns, its floor in cycles a vector of 8 weights; where the CPU has AVX-512, the same for
 * zmm and matmul_avx512.c's exact Q4_K step (a vector of 16 weights). Two orders the canonical one
 * rules out are timed beside them, to show what a change of it would gain: codes read as dwords
 * and shifted (lane l of step j: byte 4l + j, the order lane = (i mod 64) / 4) rather than widened
 * byte by byte (AVX2, Zen 4: 1.48 against 1.57 cycles a vector of 8), and on zmm the same with
 * the two sub-blocks' tables in one vpermi2ps (2.98 against 2.24 a vector of 16), or the bytes
 * put in lanes by vpshufb (2.70; it shares vpermps's pipe as vpmovzxbd does). The exact zmm step
 * also with the codes converted and dequantized by an FMA in place of the table (the same bits),
 * all of them or the high nibbles only: on Zen 5 (2026-12-08) 1.31 and 1.24 against the table's
 * 1.24 cycles a vector of 16, so the table stays. A tool for kernel work, not a test:
 *
 *   build/tests/pipes
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__)

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static char mem[4096] __attribute__((aligned(64)));

#define ITERS 5000000L
#define CLOBBER "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", \
                "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"
/* best of 5 of ITERS runs of the asm body: seconds an iteration */
#define TIME_BODY(out, body)                                                  \
    do {                                                                      \
        double best_ = 1e9;                                                   \
        for (int rep_ = 0; rep_ < 5; rep_++) {                                \
            const double t0_ = now_s();                                       \
            for (long i_ = 0; i_ < ITERS; i_++) __asm__ volatile(body : : "r"(mem) : CLOBBER); \
            const double t_ = now_s() - t0_;                                  \
            if (t_ < best_) best_ = t_;                                       \
        }                                                                     \
        (out) = best_ / (double)ITERS;                                        \
    } while (0)

/* 8 independent instructions of a kind (destinations ymm8-11 or the accumulators ymm0-7) */
#define X8(i) i(0, 8) i(1, 9) i(2, 10) i(3, 11) i(4, 8) i(5, 9) i(6, 10) i(7, 11)
#define FMA(k, d) "vfmadd231ps %%ymm15,%%ymm14,%%ymm" #k "\n"
#define CVT(k, d) "vcvtdq2ps %%ymm13,%%ymm" #d "\n"
#define ZXM(k, d) "vpmovzxbd 8*" #k "(%0),%%ymm" #d "\n"
#define AND(k, d) "vpand %%ymm13,%%ymm12,%%ymm" #d "\n"
#define SRL(k, d) "vpsrld $4,%%ymm13,%%ymm" #d "\n"
#define SHUFB(k, d) "vpshufb %%ymm13,%%ymm12,%%ymm" #d "\n"
#define PERM128(k, d) "vperm2f128 $0x20,%%ymm13,%%ymm12,%%ymm" #d "\n"
#define ADD(k, d) "vaddps %%ymm13,%%ymm12,%%ymm" #d "\n"
#define BCAST(k, d) "vpbroadcastd 4*" #k "(%0),%%ymm" #d "\n"
#define BCASTW(k, d) "vpbroadcastw 2*" #k "(%0),%%ymm" #d "\n"
#define BF16W(k, d) "vpbroadcastw 2*" #k "(%0),%%ymm" #d "\n vpslld $16,%%ymm" #d ",%%ymm" #d "\n"
#define BCASTSS(k, d) "vbroadcastss 4*" #k "(%0),%%ymm" #d "\n"
#define LOAD(k, d) "vmovups 32*" #k "(%0),%%ymm" #d "\n"

/* One Q4_K weight vector for accumulator a: codes at byte off, x at 256 + 4 off. */
#define QV(off, a, op) "vpmovzxbd " #off "(%0),%%ymm8\n " op "\n vcvtdq2ps %%ymm8,%%ymm8\n" \
    " vfmsub132ps %%ymm12,%%ymm11,%%ymm8\n vfmadd231ps 256+4*" #off "(%0),%%ymm8,%%ymm" #a "\n"
#define QAND "vpand %%ymm15,%%ymm8,%%ymm8"
#define QSRL "vpsrld $4,%%ymm8,%%ymm8"
#define QSC "vpbroadcastd 1024(%0),%%ymm12\n vpbroadcastd 1028(%0),%%ymm11\n"
#define QROW(a, b) QSC QV(0, a, QAND) QV(8, b, QAND) QV(16, a, QAND) QV(24, b, QAND) \
    QSC QV(32, a, QSRL) QV(40, b, QSRL) QV(48, a, QSRL) QV(56, b, QSRL)

/* The same with the codes of a 32-byte group loaded once as dwords, each vector's nibbles shifted
 * down and masked (lane l of step j: byte 4l + j's nibble) rather than widened byte by byte. */
#define QV2(sh, a, xo) "vpsrld $" #sh ",%%ymm10,%%ymm8\n vpand %%ymm15,%%ymm8,%%ymm8\n vcvtdq2ps %%ymm8,%%ymm8\n" \
    " vfmsub132ps %%ymm12,%%ymm11,%%ymm8\n vfmadd231ps 256+" #xo "(%0),%%ymm8,%%ymm" #a "\n"
#define QROW2(a, b) "vmovdqu 0(%0),%%ymm10\n" QSC QV2(0, a, 0) QV2(8, b, 32) QV2(16, a, 64) QV2(24, b, 96) \
    QSC QV2(4, a, 128) QV2(12, b, 160) QV2(20, a, 192) QV2(28, b, 224)

/* A timed body: n instructions (a step case: n weight vectors), seconds an iteration. */
typedef struct {
    const char *name;
    int n;
    double t;
} pipe_case;
/* One more row of a table r[] of k rows. */
#define CASE(name_, n_, body_) do { r[k].name = name_; r[k].n = n_; TIME_BODY(r[k].t, body_); k++; } while (0)

/* The table in cycles (t_add: a cycle's seconds); its step rows per vector of `lanes` weights. */
static void print_cases(const pipe_case *r, int k, double t_add, int lanes) {
    for (int i = 0; i < k; i++) {
        const double cyc = r[i].t / t_add;
        if (strstr(r[i].name, "step"))
            printf("%-34s %8.2f %12s  (%.2f cycles a vector of %d weights)\n", r[i].name, cyc, "", cyc / r[i].n, lanes);
        else
            printf("%-34s %8.2f %12.2f\n", r[i].name, cyc, r[i].n / cyc);
    }
}

/* The same for zmm (AVX-512: matmul_avx512.c's exact Q4_K step, a 16-entry table made by one FMA
 * a sub-block, each code looked up with vpermps), zmm0-15 only (the clobbers above). */
#define Z8(i) i(0, 8) i(1, 9) i(2, 10) i(3, 11) i(4, 8) i(5, 9) i(6, 10) i(7, 11)
#define ZFMA(k, d) "vfmadd231ps %%zmm15,%%zmm14,%%zmm" #k "\n"
#define ZPERM(k, d) "vpermps %%zmm13,%%zmm12,%%zmm" #d "\n"
#define ZZXM(k, d) "vpmovzxbd 16*" #k "(%0),%%zmm" #d "\n"
#define ZSRL(k, d) "vpsrld $4,%%zmm13,%%zmm" #d "\n"
#define ZAND(k, d) "vpandd %%zmm13,%%zmm12,%%zmm" #d "\n"
#define ZFMAB(k, d) "vfmadd231ps 4*" #k "(%0)%{1to16%},%%zmm14,%%zmm" #k "\n"
#define ZFMAM(k, d) "vfmadd231ps 64*" #k "(%0),%%zmm14,%%zmm" #k "\n"
#define ZLOAD(k, d) "vmovaps 64*" #k "(%0),%%zmm" #d "\n"
#define ZCVT(k, d) "vcvtdq2ps %%zmm13,%%zmm" #d "\n"
/* One row's step of 64 weights into accumulator a: codes at byte off (two 16-byte halves, low
 * nibbles as they are, vpermps reading 4 bits; high nibbles shifted), two tables (ZTABLES: scale
 * and min broadcast, one FMA each), four lookups and four FMAs with x from memory (ZLOOKUP). */
#define ZTABLES " vpbroadcastd 1024(%0),%%zmm12\n vpbroadcastd 1028(%0),%%zmm13\n vfmsub132ps %%zmm14,%%zmm13,%%zmm12\n" \
    " vpbroadcastd 1032(%0),%%zmm13\n vpbroadcastd 1036(%0),%%zmm15\n vfmsub132ps %%zmm14,%%zmm15,%%zmm13\n"
#define ZLOOKUP(a) " vpermps %%zmm12,%%zmm8,%%zmm8\n vpermps %%zmm12,%%zmm9,%%zmm9\n" \
    " vpermps %%zmm13,%%zmm10,%%zmm10\n vpermps %%zmm13,%%zmm11,%%zmm11\n" \
    " vfmadd231ps 2048(%0),%%zmm8,%%zmm" #a "\n vfmadd231ps 2112(%0),%%zmm9,%%zmm" #a "\n" \
    " vfmadd231ps 2176(%0),%%zmm10,%%zmm" #a "\n vfmadd231ps 2240(%0),%%zmm11,%%zmm" #a "\n"
#define ZQROW(off, a) "vpmovzxbd " #off "(%0),%%zmm8\n vpmovzxbd 16+" #off "(%0),%%zmm9\n" \
    " vpsrld $4,%%zmm8,%%zmm10\n vpsrld $4,%%zmm9,%%zmm11\n" ZTABLES ZLOOKUP(a)

/* The same step with each 16 codes' bytes put in dword lanes by a broadcast of 16 bytes (a load)
 * and vpshufb rather than vpmovzxbd (which shares vpermps's pipe). */
#define ZSHUFB(k, d) "vpshufb %%zmm13,%%zmm12,%%zmm" #d "\n"
#define ZBC128(k, d) "vbroadcasti32x4 16*" #k "(%0),%%zmm" #d "\n"
#define ZQROWS(off, a) "vbroadcasti32x4 " #off "(%0),%%zmm8\n vpshufb %%zmm7,%%zmm8,%%zmm8\n" \
    " vbroadcasti32x4 16+" #off "(%0),%%zmm9\n vpshufb %%zmm7,%%zmm9,%%zmm9\n" \
    " vpsrld $4,%%zmm8,%%zmm10\n vpsrld $4,%%zmm9,%%zmm11\n" ZTABLES ZLOOKUP(a)

/* The step in the order lane = (i mod 64) / 4: a 32-byte group in both halves, each vector's
 * nibbles shifted per lane (vpsrlvd) and masked with the second table's index bit set for the
 * high nibbles (vpternlogd), both tables in one vpermi2ps (ZTV: one vector of 16 weights). */
#define ZPERMI2(k, d) "vpermi2ps %%zmm13,%%zmm12,%%zmm" #d "\n"
#define ZSRLV(k, d) "vpsrlvd %%zmm13,%%zmm12,%%zmm" #d "\n"
#define ZTERN(k, d) "vpternlogd $0xF8,%%zmm13,%%zmm12,%%zmm" #d "\n"
#define ZBC256(k, d) "vbroadcasti64x4 32*" #k "(%0),%%zmm" #d "\n"
#define ZTV(sh, a, xo) "vpsrlvd %%zmm" #sh ",%%zmm8,%%zmm9\n vpternlogd $0xF8,%%zmm6,%%zmm5,%%zmm9\n" \
    " vmovaps %%zmm12,%%zmm10\n vpermi2ps %%zmm13,%%zmm10,%%zmm9\n vfmadd231ps " #xo "(%0),%%zmm9,%%zmm" #a "\n"
#define ZQROWT(off, a) "vbroadcasti64x4 " #off "(%0),%%zmm8\n" ZTABLES \
    ZTV(7, a, 2048) ZTV(4, a, 2112) ZTV(7, a, 2176) ZTV(4, a, 2240)

/* The exact step with the codes converted (vpandd, cvtdq2ps) and dequantized by one FMA each,
 * (d sc) q - dmin m, in place of the tables' lookups: fewer shuffles, more FMAs. */
#define ZQROWC(off, a) "vpmovzxbd " #off "(%0),%%zmm8\n vpmovzxbd 16+" #off "(%0),%%zmm9\n" \
    " vpsrld $4,%%zmm8,%%zmm10\n vpsrld $4,%%zmm9,%%zmm11\n vpandd %%zmm6,%%zmm8,%%zmm8\n vpandd %%zmm6,%%zmm9,%%zmm9\n" \
    " vcvtdq2ps %%zmm8,%%zmm8\n vcvtdq2ps %%zmm9,%%zmm9\n vcvtdq2ps %%zmm10,%%zmm10\n vcvtdq2ps %%zmm11,%%zmm11\n" \
    " vpbroadcastd 1024(%0),%%zmm12\n vpbroadcastd 1028(%0),%%zmm13\n vpbroadcastd 1032(%0),%%zmm4\n vpbroadcastd 1036(%0),%%zmm5\n" \
    " vfmsub132ps %%zmm12,%%zmm13,%%zmm8\n vfmsub132ps %%zmm12,%%zmm13,%%zmm9\n" \
    " vfmsub132ps %%zmm4,%%zmm5,%%zmm10\n vfmsub132ps %%zmm4,%%zmm5,%%zmm11\n" \
    " vfmadd231ps 2048(%0),%%zmm8,%%zmm" #a "\n vfmadd231ps 2112(%0),%%zmm9,%%zmm" #a "\n" \
    " vfmadd231ps 2176(%0),%%zmm10,%%zmm" #a "\n vfmadd231ps 2240(%0),%%zmm11,%%zmm" #a "\n"
/* Half and half: the low nibbles by the table, the high by cvtdq2ps and an FMA. */
#define ZQROWH(off, a) "vpmovzxbd " #off "(%0),%%zmm8\n vpmovzxbd 16+" #off "(%0),%%zmm9\n" \
    " vpsrld $4,%%zmm8,%%zmm10\n vpsrld $4,%%zmm9,%%zmm11\n" \
    " vcvtdq2ps %%zmm10,%%zmm10\n vcvtdq2ps %%zmm11,%%zmm11\n" \
    " vpbroadcastd 1024(%0),%%zmm12\n vpbroadcastd 1028(%0),%%zmm13\n vfmsub132ps %%zmm14,%%zmm13,%%zmm12\n" \
    " vpbroadcastd 1032(%0),%%zmm4\n vpbroadcastd 1036(%0),%%zmm5\n" \
    " vpermps %%zmm12,%%zmm8,%%zmm8\n vpermps %%zmm12,%%zmm9,%%zmm9\n" \
    " vfmsub132ps %%zmm4,%%zmm5,%%zmm10\n vfmsub132ps %%zmm4,%%zmm5,%%zmm11\n" \
    " vfmadd231ps 2048(%0),%%zmm8,%%zmm" #a "\n vfmadd231ps 2112(%0),%%zmm9,%%zmm" #a "\n" \
    " vfmadd231ps 2176(%0),%%zmm10,%%zmm" #a "\n vfmadd231ps 2240(%0),%%zmm11,%%zmm" #a "\n"
#define ZBCD(k, d) "vpbroadcastd 4*" #k "(%0),%%zmm" #d "\n"

static void zmm_pipes(double t_add) {
    printf("\nAVX-512 (zmm)\n%-34s %8s %12s\n", "instructions an iteration", "cycles", "per cycle");
    pipe_case r[48];
    int k = 0;
    CASE("8 fma", 8, Z8(ZFMA));
    CASE("8 vpermps", 8, Z8(ZPERM));
    CASE("8 vpmovzxbd from memory", 8, Z8(ZZXM));
    CASE("8 vpsrld", 8, Z8(ZSRL));
    CASE("8 vpandd", 8, Z8(ZAND));
    CASE("8 cvtdq2ps", 8, Z8(ZCVT));
    CASE("8 fma, broadcast from memory", 8, Z8(ZFMAB));
    CASE("8 fma, zmm from memory", 8, Z8(ZFMAM));
    CASE("8 loads of 64 bytes", 8, Z8(ZLOAD));
    CASE("8 fma bcast + 2 loads of 64", 10, Z8(ZFMAB) ZLOAD(0, 8) ZLOAD(1, 9));
    CASE("8 fma + 8 vpermps", 16, Z8(ZFMA) Z8(ZPERM));
    CASE("8 fma + 8 vpmovzxbd", 16, Z8(ZFMA) Z8(ZZXM));
    CASE("8 fma + 8 vpsrld", 16, Z8(ZFMA) Z8(ZSRL));
    CASE("8 fma + 8 cvtdq2ps", 16, Z8(ZFMA) Z8(ZCVT));
    CASE("8 vpermps + 8 vpmovzxbd", 16, Z8(ZPERM) Z8(ZZXM));
    CASE("8 vpermps + 8 vpsrld", 16, Z8(ZPERM) Z8(ZSRL));
    CASE("8 vpermps + 8 vpandd", 16, Z8(ZPERM) Z8(ZAND));
    CASE("8 vpshufb", 8, Z8(ZSHUFB));
    CASE("8 vbroadcasti32x4 from memory", 8, Z8(ZBC128));
    CASE("8 fma + 8 vpshufb", 16, Z8(ZFMA) Z8(ZSHUFB));
    CASE("8 vpermps + 8 vpshufb", 16, Z8(ZPERM) Z8(ZSHUFB));
    CASE("8 vpshufb + 8 vpsrld", 16, Z8(ZSHUFB) Z8(ZSRL));
    CASE("8 fma + 8 vpermps + 8 vpshufb", 24, Z8(ZFMA) Z8(ZPERM) Z8(ZSHUFB));
    CASE("Q4_K step, vpshufb, 4 rows x 64", 16, ZQROWS(0, 0) ZQROWS(32, 1) ZQROWS(64, 2) ZQROWS(96, 3));
    CASE("8 vpermi2ps", 8, Z8(ZPERMI2));
    CASE("8 vpsrlvd", 8, Z8(ZSRLV));
    CASE("8 vpternlogd", 8, Z8(ZTERN));
    CASE("8 vbroadcasti64x4", 8, Z8(ZBC256));
    CASE("8 fma + 8 vpermi2ps", 16, Z8(ZFMA) Z8(ZPERMI2));
    CASE("8 vpsrlvd + 8 vpermi2ps", 16, Z8(ZSRLV) Z8(ZPERMI2));
    CASE("8 vpternlogd + 8 vpermi2ps", 16, Z8(ZTERN) Z8(ZPERMI2));
    CASE("8 vbroadcasti64x4 + 8 vpermps", 16, Z8(ZBC256) Z8(ZPERM));
    CASE("Q4_K step, vpermi2ps, 4 rows x 64", 16, ZQROWT(0, 0) ZQROWT(32, 1) ZQROWT(64, 2) ZQROWT(96, 3));
    CASE("exact Q4_K step, 4 rows x 64", 16, ZQROW(0, 0) ZQROW(32, 1) ZQROW(64, 2) ZQROW(96, 3));
    CASE("exact Q4_K step, cvt + fma, 4 rows", 16, ZQROWC(0, 0) ZQROWC(32, 1) ZQROWC(64, 2) ZQROWC(96, 3));
    CASE("exact Q4_K step, half cvt, 4 rows", 16, ZQROWH(0, 0) ZQROWH(32, 1) ZQROWH(64, 2) ZQROWH(96, 3));
    CASE("8 vpbroadcastd zmm from memory", 8, Z8(ZBCD));
    CASE("8 vpbroadcastd + 8 vpermps", 16, Z8(ZBCD) Z8(ZPERM));
    print_cases(r, k, t_add, 16);
}

int main(void) {
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        printf("pipes: this CPU has no AVX2 and FMA\n");
        return 0;
    }
    memset(mem, 0, sizeof mem);
    double t_add; /* 64 dependent adds: 64 cycles */
    {
        double best = 1e9;
        for (int rep = 0; rep < 5; rep++) {
            long v = 0;
            const double t0 = now_s();
            for (long i = 0; i < ITERS; i++)
                __asm__ volatile(".rept 64\n add $1, %0\n .endr" : "+r"(v));
            const double t = now_s() - t0;
            if (t < best) best = t;
        }
        t_add = best / (double)ITERS / 64.0;
    }
    printf("cycle: %.4f ns (%.3f GHz, from dependent adds)\n", 1e9 * t_add, 1e-9 / t_add);
    printf("%-34s %8s %12s\n", "instructions an iteration", "cycles", "per cycle");
    pipe_case r[40];
    int k = 0;
    CASE("8 fma (8 chains)", 8, X8(FMA));
    CASE("8 cvtdq2ps", 8, X8(CVT));
    CASE("8 pmovzxbd from memory", 8, X8(ZXM));
    CASE("8 pand", 8, X8(AND));
    CASE("8 psrld", 8, X8(SRL));
    CASE("8 pshufb", 8, X8(SHUFB));
    CASE("8 vperm2f128", 8, X8(PERM128));
    CASE("8 addps", 8, X8(ADD));
    CASE("8 pbroadcastd from memory", 8, X8(BCAST));
    CASE("8 loads of 32 bytes", 8, X8(LOAD));
    CASE("8 fma + 8 cvtdq2ps", 16, X8(FMA) X8(CVT));
    CASE("8 fma + 8 pmovzxbd", 16, X8(FMA) X8(ZXM));
    CASE("8 fma + 8 pshufb", 16, X8(FMA) X8(SHUFB));
    CASE("8 fma + 8 psrld", 16, X8(FMA) X8(SRL));
    CASE("8 fma + 8 addps", 16, X8(FMA) X8(ADD));
    CASE("8 pbroadcastw from memory", 8, X8(BCASTW));
    CASE("8 fma + 8 pbroadcastw", 16, X8(FMA) X8(BCASTW));
    CASE("8 fma + 8 pbroadcastd", 16, X8(FMA) X8(BCAST));
    CASE("8 fma + 8 broadcastss", 16, X8(FMA) X8(BCASTSS));
    CASE("16 fma + 8 bf16 (pbroadcastw, pslld)", 24, X8(FMA) X8(FMA) X8(BF16W));
    CASE("16 fma + 8 pbroadcastd + 8 pand", 32, X8(FMA) X8(FMA) X8(BCAST) X8(AND));
    CASE("8 cvtdq2ps + 8 psrld", 16, X8(CVT) X8(SRL));
    CASE("8 cvtdq2ps + 8 pmovzxbd", 16, X8(CVT) X8(ZXM));
    CASE("8 pmovzxbd + 8 pshufb", 16, X8(ZXM) X8(SHUFB));
    CASE("8 pmovzxbd + 8 psrld", 16, X8(ZXM) X8(SRL));
    CASE("Q4_K step, shifts, 4 rows x 64", 32, QROW2(0, 1) QROW2(2, 3) QROW2(4, 5) QROW2(6, 7));
    CASE("exact Q4_K step, 4 rows x 64", 32, QROW(0, 1) QROW(2, 3) QROW(4, 5) QROW(6, 7));
    print_cases(r, k, t_add, 8);
    if (__builtin_cpu_supports("avx512f")) zmm_pipes(t_add);
    return 0;
}

#else
int main(void) {
    printf("pipes: x86-64 only\n");
    return 0;
}
#endif
