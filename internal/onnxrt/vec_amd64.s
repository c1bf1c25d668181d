#include "textflag.h"

// func dwTapsAsm(out *float32, n int, srcs **float32, w *float32, taps int)
//
// out[x] = Σ_t w[t]·srcs[t][x] for x < n (n a multiple of 8): the direct
// depthwise kernel over phase-decomposed planes. Four accumulators of 8
// outputs hide the FMA latency.
TEXT ·dwTapsAsm(SB), NOSPLIT, $0-40
	MOVQ out+0(FP), DI
	MOVQ n+8(FP), CX
	MOVQ srcs+16(FP), SI
	MOVQ w+24(FP), DX
	MOVQ taps+32(FP), R8
	XORQ R9, R9
loop32:
	CMPQ CX, $32
	JL loop8
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	XORQ R10, R10
t32:
	MOVQ (SI)(R10*8), R11
	ADDQ R9, R11
	VBROADCASTSS (DX)(R10*4), Y4
	VFMADD231PS (R11), Y4, Y0
	VFMADD231PS 32(R11), Y4, Y1
	VFMADD231PS 64(R11), Y4, Y2
	VFMADD231PS 96(R11), Y4, Y3
	INCQ R10
	CMPQ R10, R8
	JL t32
	VMOVUPS Y0, (DI)(R9*1)
	VMOVUPS Y1, 32(DI)(R9*1)
	VMOVUPS Y2, 64(DI)(R9*1)
	VMOVUPS Y3, 96(DI)(R9*1)
	ADDQ $128, R9
	SUBQ $32, CX
	JMP loop32
loop8:
	CMPQ CX, $8
	JL done
	VXORPS Y0, Y0, Y0
	XORQ R10, R10
t8:
	MOVQ (SI)(R10*8), R11
	ADDQ R9, R11
	VBROADCASTSS (DX)(R10*4), Y4
	VFMADD231PS (R11), Y4, Y0
	INCQ R10
	CMPQ R10, R8
	JL t8
	VMOVUPS Y0, (DI)(R9*1)
	ADDQ $32, R9
	SUBQ $8, CX
	JMP loop8
done:
	VZEROUPPER
	RET

// func epiAsm(d *float32, n int, b float32, r *float32, a float32)
//
// d[i] = act(d[i] + b + r[i]) for i < n (n a multiple of 8; r may be nil),
// where act(v) = max(v,0) + a·min(v,0): a=0 is Relu, a=1 the identity,
// otherwise (P)Relu/LeakyRelu with slope a.
TEXT ·epiAsm(SB), NOSPLIT, $0-36
	MOVQ d+0(FP), DI
	MOVQ n+8(FP), CX
	VBROADCASTSS b+16(FP), Y1
	MOVQ r+24(FP), SI
	VBROADCASTSS a+32(FP), Y2
	VXORPS Y3, Y3, Y3
	TESTQ SI, SI
	JZ nores
res:
	CMPQ CX, $8
	JL done
	VMOVUPS (DI), Y0
	VADDPS Y1, Y0, Y0
	VADDPS (SI), Y0, Y0
	VMAXPS Y3, Y0, Y4
	VMINPS Y3, Y0, Y5
	VFMADD231PS Y5, Y2, Y4
	VMOVUPS Y4, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	SUBQ $8, CX
	JMP res
nores:
	CMPQ CX, $8
	JL done
	VMOVUPS (DI), Y0
	VADDPS Y1, Y0, Y0
	VMAXPS Y3, Y0, Y4
	VMINPS Y3, Y0, Y5
	VFMADD231PS Y5, Y2, Y4
	VMOVUPS Y4, (DI)
	ADDQ $32, DI
	SUBQ $8, CX
	JMP nores
done:
	VZEROUPPER
	RET

// tailMask<>+4·(8−r) holds r all-ones lanes followed by zeros: the mask of
// the first r lanes of a YMM register.
DATA tailMask<>+0(SB)/8, $0xffffffffffffffff
DATA tailMask<>+8(SB)/8, $0xffffffffffffffff
DATA tailMask<>+16(SB)/8, $0xffffffffffffffff
DATA tailMask<>+24(SB)/8, $0xffffffffffffffff
DATA tailMask<>+32(SB)/8, $0
DATA tailMask<>+40(SB)/8, $0
DATA tailMask<>+48(SB)/8, $0
DATA tailMask<>+56(SB)/8, $0
GLOBL tailMask<>(SB), RODATA|NOPTR, $64

// EPI applies epiAsm's epilogue to accumulator r: r = max(r+b,0) + a·min(r+b,0)
// with b in Y13, a in Y14 and zero in Y15, the very instructions epiAsm
// uses (same operand order), so the results are the same bits.
#define EPI(r) \
	VADDPS Y13, r, r; \
	VMAXPS Y15, r, Y5; \
	VMINPS Y15, r, Y6; \
	VFMADD231PS Y6, Y14, Y5; \
	VMOVAPS Y5, r

// func dwRowAsm(out *float32, n int, src *float32, offs *int, w *float32, taps int, epi int, b float32, a float32)
//
// out[x] = Σ_t w[t]·src[offs[t]+x] for x < n (any n ≥ 1; the last n mod 8
// with masked loads and stores, so nothing outside out[:n] or the taps'
// runs is touched): one output row of the direct depthwise kernel, each
// sum accumulated from +0 tap by tap as dwTapsAsm does. With epi ≠ 0 the
// sums get epiAsm's epilogue (bias b, slope a) before they are stored.
TEXT ·dwRowAsm(SB), NOSPLIT, $0-64
	MOVQ out+0(FP), DI
	MOVQ n+8(FP), CX
	MOVQ src+16(FP), SI
	MOVQ offs+24(FP), R12
	MOVQ w+32(FP), DX
	MOVQ taps+40(FP), R8
	MOVQ epi+48(FP), R13
	VBROADCASTSS b+56(FP), Y13
	VBROADCASTSS a+60(FP), Y14
	VXORPS Y15, Y15, Y15
	XORQ R9, R9
r32:
	CMPQ CX, $32
	JL r8
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	XORQ R10, R10
r32t:
	MOVQ (R12)(R10*8), R11
	LEAQ (SI)(R11*4), R11
	ADDQ R9, R11
	VBROADCASTSS (DX)(R10*4), Y4
	VFMADD231PS (R11), Y4, Y0
	VFMADD231PS 32(R11), Y4, Y1
	VFMADD231PS 64(R11), Y4, Y2
	VFMADD231PS 96(R11), Y4, Y3
	INCQ R10
	CMPQ R10, R8
	JL r32t
	TESTQ R13, R13
	JZ r32s
	EPI(Y0)
	EPI(Y1)
	EPI(Y2)
	EPI(Y3)
r32s:
	VMOVUPS Y0, (DI)(R9*1)
	VMOVUPS Y1, 32(DI)(R9*1)
	VMOVUPS Y2, 64(DI)(R9*1)
	VMOVUPS Y3, 96(DI)(R9*1)
	ADDQ $128, R9
	SUBQ $32, CX
	JMP r32
r8:
	CMPQ CX, $8
	JL rtail
	VXORPS Y0, Y0, Y0
	XORQ R10, R10
r8t:
	MOVQ (R12)(R10*8), R11
	LEAQ (SI)(R11*4), R11
	ADDQ R9, R11
	VBROADCASTSS (DX)(R10*4), Y4
	VFMADD231PS (R11), Y4, Y0
	INCQ R10
	CMPQ R10, R8
	JL r8t
	TESTQ R13, R13
	JZ r8s
	EPI(Y0)
r8s:
	VMOVUPS Y0, (DI)(R9*1)
	ADDQ $32, R9
	SUBQ $8, CX
	JMP r8
rtail:
	TESTQ CX, CX
	JZ rdone
	// mask of the first CX lanes
	LEAQ tailMask<>(SB), R11
	MOVQ $8, R10
	SUBQ CX, R10
	VMOVDQU (R11)(R10*4), Y7
	VXORPS Y0, Y0, Y0
	XORQ R10, R10
rtt:
	MOVQ (R12)(R10*8), R11
	LEAQ (SI)(R11*4), R11
	ADDQ R9, R11
	VBROADCASTSS (DX)(R10*4), Y4
	VMASKMOVPS (R11), Y7, Y8
	VFMADD231PS Y8, Y4, Y0
	INCQ R10
	CMPQ R10, R8
	JL rtt
	TESTQ R13, R13
	JZ rts
	EPI(Y0)
rts:
	VMASKMOVPS Y0, Y7, (DI)(R9*1)
rdone:
	VZEROUPPER
	RET

// func copyRowsAsm(dst *float32, dstStride int, src *float32, srcStride int, rows, n int)
//
// Copies rows runs of n floats (n ≥ 1), src rows srcStride floats apart to
// dst rows dstStride apart; the last n mod 8 with masked loads and stores.
TEXT ·copyRowsAsm(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ dstStride+8(FP), R8
	SHLQ $2, R8
	MOVQ src+16(FP), SI
	MOVQ srcStride+24(FP), R9
	SHLQ $2, R9
	MOVQ rows+32(FP), BX
	MOVQ n+40(FP), DX
	LEAQ tailMask<>(SB), R11
	MOVQ DX, R10
	ANDQ $7, R10
	NEGQ R10
	ADDQ $8, R10
	VMOVDQU (R11)(R10*4), Y7 // mask of the last n mod 8
	TESTQ BX, BX
	JZ cdone
crow:
	MOVQ DX, CX
	XORQ AX, AX
c32:
	CMPQ CX, $32
	JL c8
	VMOVUPS (SI)(AX*1), Y0
	VMOVUPS 32(SI)(AX*1), Y1
	VMOVUPS 64(SI)(AX*1), Y2
	VMOVUPS 96(SI)(AX*1), Y3
	VMOVUPS Y0, (DI)(AX*1)
	VMOVUPS Y1, 32(DI)(AX*1)
	VMOVUPS Y2, 64(DI)(AX*1)
	VMOVUPS Y3, 96(DI)(AX*1)
	ADDQ $128, AX
	SUBQ $32, CX
	JMP c32
c8:
	CMPQ CX, $8
	JL ctail
	VMOVUPS (SI)(AX*1), Y0
	VMOVUPS Y0, (DI)(AX*1)
	ADDQ $32, AX
	SUBQ $8, CX
	JMP c8
ctail:
	TESTQ CX, CX
	JZ cnext
	VMASKMOVPS (SI)(AX*1), Y7, Y0
	VMASKMOVPS Y0, Y7, (DI)(AX*1)
cnext:
	ADDQ R8, DI
	ADDQ R9, SI
	DECQ BX
	JNZ crow
cdone:
	VZEROUPPER
	RET

// func deint2Asm(even, odd *float32, dstStride int, src *float32, srcStride int, rows, n int)
//
// Splits rows runs of n floats (src rows srcStride floats apart) into
// their even and odd columns: src[2k] to even[k], src[2k+1] to odd[k], the
// even and odd rows dstStride floats apart. Reads and writes nothing
// outside those runs.
TEXT ·deint2Asm(SB), NOSPLIT, $0-56
	MOVQ even+0(FP), DI
	MOVQ odd+8(FP), R12
	MOVQ dstStride+16(FP), R8
	SHLQ $2, R8
	MOVQ src+24(FP), SI
	MOVQ srcStride+32(FP), R9
	SHLQ $2, R9
	MOVQ rows+40(FP), BX
	MOVQ n+48(FP), DX
	TESTQ BX, BX
	JZ ddone
drow:
	MOVQ DX, CX
	XORQ AX, AX // bytes into src
	XORQ R10, R10 // bytes into even and odd
d16:
	CMPQ CX, $16
	JL d2
	VMOVUPS (SI)(AX*1), Y0
	VMOVUPS 32(SI)(AX*1), Y1
	VSHUFPS $0x88, Y1, Y0, Y2
	VSHUFPS $0xDD, Y1, Y0, Y3
	VPERMPD $0xD8, Y2, Y2
	VPERMPD $0xD8, Y3, Y3
	VMOVUPS Y2, (DI)(R10*1)
	VMOVUPS Y3, (R12)(R10*1)
	ADDQ $64, AX
	ADDQ $32, R10
	SUBQ $16, CX
	JMP d16
d2:
	CMPQ CX, $2
	JL d1
	MOVL (SI)(AX*1), R11
	MOVL R11, (DI)(R10*1)
	MOVL 4(SI)(AX*1), R11
	MOVL R11, (R12)(R10*1)
	ADDQ $8, AX
	ADDQ $4, R10
	SUBQ $2, CX
	JMP d2
d1:
	TESTQ CX, CX
	JZ dnext
	MOVL (SI)(AX*1), R11
	MOVL R11, (DI)(R10*1)
dnext:
	ADDQ R8, DI
	ADDQ R8, R12
	ADDQ R9, SI
	DECQ BX
	JNZ drow
ddone:
	VZEROUPPER
	RET

// func dwRows4Asm(out *float32, ow, rows int, src *float32, wph int, offs *int, w *float32, taps int, epi int, b float32, a float32)
//
// dwRowAsm for rows (a multiple of 4) output rows of ow values, out rows
// ow floats apart and src rows wph floats apart, four rows at a time: the
// four rows' sums of 8 columns are independent chains of FMAs, which a
// single row of fewer than 32 columns does not have.
TEXT ·dwRows4Asm(SB), NOSPLIT, $0-80
	MOVQ out+0(FP), DI
	MOVQ src+24(FP), SI
	MOVQ wph+32(FP), R14
	SHLQ $2, R14 // src row stride in bytes
	LEAQ (R14)(R14*2), BX // three src rows
	MOVQ offs+40(FP), R12
	MOVQ w+48(FP), DX
	MOVQ taps+56(FP), R8
	MOVQ epi+64(FP), R13
	VBROADCASTSS b+72(FP), Y13
	VBROADCASTSS a+76(FP), Y14
	VXORPS Y15, Y15, Y15
	MOVQ ow+8(FP), AX
	MOVQ AX, R10
	ANDQ $7, R10
	NEGQ R10
	ADDQ $8, R10
	LEAQ tailMask<>(SB), R11
	VMOVDQU (R11)(R10*4), Y7 // mask of the last ow mod 8 columns
	SHLQ $2, AX // out row stride in bytes
q4:
	CMPQ rows+16(FP), $4
	JL qdone
	MOVQ ow+8(FP), CX
	XORQ R9, R9
q8:
	CMPQ CX, $8
	JL qtail
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	XORQ R10, R10
q8t:
	MOVQ (R12)(R10*8), R11
	LEAQ (SI)(R11*4), R11
	ADDQ R9, R11
	VBROADCASTSS (DX)(R10*4), Y4
	VFMADD231PS (R11), Y4, Y0
	VFMADD231PS (R11)(R14*1), Y4, Y1
	VFMADD231PS (R11)(R14*2), Y4, Y2
	VFMADD231PS (R11)(BX*1), Y4, Y3
	INCQ R10
	CMPQ R10, R8
	JL q8t
	TESTQ R13, R13
	JZ q8s
	EPI(Y0)
	EPI(Y1)
	EPI(Y2)
	EPI(Y3)
q8s:
	LEAQ (DI)(R9*1), R11
	VMOVUPS Y0, (R11)
	VMOVUPS Y1, (R11)(AX*1)
	LEAQ (R11)(AX*2), R11
	VMOVUPS Y2, (R11)
	VMOVUPS Y3, (R11)(AX*1)
	ADDQ $32, R9
	SUBQ $8, CX
	JMP q8
qtail:
	TESTQ CX, CX
	JZ qnext
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	XORQ R10, R10
qtt:
	MOVQ (R12)(R10*8), R11
	LEAQ (SI)(R11*4), R11
	ADDQ R9, R11
	VBROADCASTSS (DX)(R10*4), Y4
	VMASKMOVPS (R11), Y7, Y8
	VMASKMOVPS (R11)(R14*1), Y7, Y9
	VMASKMOVPS (R11)(R14*2), Y7, Y10
	VMASKMOVPS (R11)(BX*1), Y7, Y11
	VFMADD231PS Y8, Y4, Y0
	VFMADD231PS Y9, Y4, Y1
	VFMADD231PS Y10, Y4, Y2
	VFMADD231PS Y11, Y4, Y3
	INCQ R10
	CMPQ R10, R8
	JL qtt
	TESTQ R13, R13
	JZ qts
	EPI(Y0)
	EPI(Y1)
	EPI(Y2)
	EPI(Y3)
qts:
	LEAQ (DI)(R9*1), R11
	VMASKMOVPS Y0, Y7, (R11)
	VMASKMOVPS Y1, Y7, (R11)(AX*1)
	LEAQ (R11)(AX*2), R11
	VMASKMOVPS Y2, Y7, (R11)
	VMASKMOVPS Y3, Y7, (R11)(AX*1)
qnext:
	LEAQ (DI)(AX*4), DI
	LEAQ (SI)(R14*4), SI
	SUBQ $4, rows+16(FP)
	JMP q4
qdone:
	VZEROUPPER
	RET

// panelMask<>+4·(16−b) holds b all-ones lanes, then zeros: the mask of the
// first b of 16 lanes (two YMM registers).
DATA panelMask<>+0(SB)/8, $0xffffffffffffffff
DATA panelMask<>+8(SB)/8, $0xffffffffffffffff
DATA panelMask<>+16(SB)/8, $0xffffffffffffffff
DATA panelMask<>+24(SB)/8, $0xffffffffffffffff
DATA panelMask<>+32(SB)/8, $0xffffffffffffffff
DATA panelMask<>+40(SB)/8, $0xffffffffffffffff
DATA panelMask<>+48(SB)/8, $0xffffffffffffffff
DATA panelMask<>+56(SB)/8, $0xffffffffffffffff
DATA panelMask<>+64(SB)/8, $0
DATA panelMask<>+72(SB)/8, $0
DATA panelMask<>+80(SB)/8, $0
DATA panelMask<>+88(SB)/8, $0
DATA panelMask<>+96(SB)/8, $0
DATA panelMask<>+104(SB)/8, $0
DATA panelMask<>+112(SB)/8, $0
DATA panelMask<>+120(SB)/8, $0
GLOBL panelMask<>(SB), RODATA|NOPTR, $128

// RUNMASK(o0, o1, o2, lo, hi, adj) loads the run (c0, len, off) at
// o0(R13), o1(R13), o2(R13): the mask of its lanes [c0, c0+len) into lo,
// hi and 4·(off−c0) into adj. Uses AX, DX, Y4–Y7.
#define RUNMASK(o0, o1, o2, lo, hi, adj) \
	MOVQ o0(R13), AX; \
	MOVQ o1(R13), DX; \
	ADDQ AX, DX; \
	NEGQ DX; \
	ADDQ $16, DX; \
	VMOVDQU (BX)(DX*4), Y4; \
	VMOVDQU 32(BX)(DX*4), Y5; \
	MOVQ $16, DX; \
	SUBQ AX, DX; \
	VMOVDQU (BX)(DX*4), Y6; \
	VMOVDQU 32(BX)(DX*4), Y7; \
	VANDNPS Y4, Y6, lo; \
	VANDNPS Y5, Y7, hi; \
	MOVQ o2(R13), adj; \
	SUBQ AX, adj; \
	SHLQ $2, adj

// func packPanelAsm(dst *float32, kc int, src *float32, taps *int, runs *int, nruns int)
//
// Packs one 16-column panel of kc im2col rows: row k, column c is
// src[taps[k]+off+(c−c0)] for the run (c0, len, off) of runs holding c, 0
// for columns no run holds; dst[16k+c]. One to three runs (a panel spans
// at most three output rows when they are at least 8 wide); masked loads
// read only the runs' floats.
TEXT ·packPanelAsm(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ kc+8(FP), CX
	MOVQ src+16(FP), SI
	MOVQ taps+24(FP), R12
	MOVQ runs+32(FP), R13
	MOVQ nruns+40(FP), R8
	LEAQ panelMask<>(SB), BX
	RUNMASK(0, 8, 16, Y8, Y9, R9)
	CMPQ R8, $2
	JL p1
	RUNMASK(24, 32, 40, Y10, Y11, R10)
	CMPQ R8, $3
	JL p2
	RUNMASK(48, 56, 64, Y12, Y13, R11)
p3:
	MOVQ (R12), AX
	LEAQ (SI)(AX*4), AX
	VMASKMOVPS (AX)(R9*1), Y8, Y0
	VMASKMOVPS 32(AX)(R9*1), Y9, Y1
	VMASKMOVPS (AX)(R10*1), Y10, Y2
	VMASKMOVPS 32(AX)(R10*1), Y11, Y3
	VORPS Y2, Y0, Y0
	VORPS Y3, Y1, Y1
	VMASKMOVPS (AX)(R11*1), Y12, Y2
	VMASKMOVPS 32(AX)(R11*1), Y13, Y3
	VORPS Y2, Y0, Y0
	VORPS Y3, Y1, Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ $64, DI
	ADDQ $8, R12
	DECQ CX
	JNZ p3
	JMP pdone
p2:
	MOVQ (R12), AX
	LEAQ (SI)(AX*4), AX
	VMASKMOVPS (AX)(R9*1), Y8, Y0
	VMASKMOVPS 32(AX)(R9*1), Y9, Y1
	VMASKMOVPS (AX)(R10*1), Y10, Y2
	VMASKMOVPS 32(AX)(R10*1), Y11, Y3
	VORPS Y2, Y0, Y0
	VORPS Y3, Y1, Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ $64, DI
	ADDQ $8, R12
	DECQ CX
	JNZ p2
	JMP pdone
p1:
	MOVQ (R12), AX
	LEAQ (SI)(AX*4), AX
	VMASKMOVPS (AX)(R9*1), Y8, Y0
	VMASKMOVPS 32(AX)(R9*1), Y9, Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ $64, DI
	ADDQ $8, R12
	DECQ CX
	JNZ p1
pdone:
	VZEROUPPER
	RET
