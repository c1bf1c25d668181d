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
