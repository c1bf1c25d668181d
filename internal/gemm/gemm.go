// Package gemm is facever's single-precision matrix multiply and the
// fork-join worker pool its callers split work over. The ONNX engine
// (internal/onnxrt) builds its convolutions, Gemm and MatMul on the packed
// panels and micro-kernels here; the training losses (margin) use Sgemm as
// their BLAS.
package gemm

// Single-precision matrix multiply in the style of Goto and van de Geijn,
// "Anatomy of High-Performance Matrix Multiplication" (ACM TOMS 34(3),
// 2008) and BLIS (Van Zee and van de Geijn, ACM TOMS 41(3), 2015): A is
// packed into panels of mr rows, B into panels of nr columns for a block of
// kc rows, and a register-blocked micro-kernel computes an mr×nr tile of C
// as a sum of kc rank-1 updates held in registers. The micro-kernel is chosen
// at run time (kernel.go): AVX-512, AVX2/FMA or the portable kernelGo.

// The packed layout, shared by every micro-kernel.
const (
	MR = 6   // rows of a micro-tile (rows of a packed A panel)
	NR = 16  // columns of a micro-tile (columns of a packed B panel)
	KC = 256 // depth of a packed block (A panel 6 KiB, B panel 16 KiB)
	NC = 128 // columns of B packed per block
)

const (
	mr      = MR
	nr      = NR
	kcBlock = KC
	ncBlock = NC
)

// Tile is the scratch a partial micro-tile is computed into.
type Tile [MR * NR]float32

// PackA packs op(A) (M×K, element (i,k) at a[i*rs+k*cs]) times alpha into
// panels of mr rows: dst[(p*K+k)*mr+r]; rows past M are zero.
func PackA(dst, a []float32, M, K, rs, cs int, alpha float32) {
	panels := (M + mr - 1) / mr
	for p := 0; p < panels; p++ {
		d := dst[p*K*mr : (p+1)*K*mr]
		for r := 0; r < mr; r++ {
			i := p*mr + r
			if i >= M {
				for k := 0; k < K; k++ {
					d[k*mr+r] = 0
				}
				continue
			}
			base := i * rs
			for k := 0; k < K; k++ {
				d[k*mr+r] = a[base+k*cs] * alpha
			}
		}
	}
}

// PackedASize is the length of A packed by PackA.
func PackedASize(M, K int) int { return (M + mr - 1) / mr * mr * K }

// PackB packs rows [k0,k0+kc) and columns [j0,j0+n) of a K×N matrix B
// (element (k,j) at b[k*rs+j*cs]) into panels of nr columns:
// dst[(q*kc+k)*nr+c]; columns past n are zero.
func PackB(dst, b []float32, k0, kc, j0, n, rs, cs int) {
	panels := (n + nr - 1) / nr
	for q := 0; q < panels; q++ {
		d := dst[q*kc*nr : (q+1)*kc*nr]
		cols := n - q*nr
		if cols > nr {
			cols = nr
		}
		jb := j0 + q*nr
		for k := 0; k < kc; k++ {
			row := d[k*nr : k*nr+nr]
			base := (k0+k)*rs + jb*cs
			if cs == 1 {
				copy(row[:cols], b[base:base+cols])
			} else {
				for c := 0; c < cols; c++ {
					row[c] = b[base+c*cs]
				}
			}
			for c := cols; c < nr; c++ {
				row[c] = 0
			}
		}
	}
}

// kernelGo computes C[0:mr,0:nr] (+)= A·B for a packed panel a (kc×mr)
// and b (kc×nr, row stride ldb); ldc is C's row stride.
func kernelGo(kc int, a, b, c []float32, ldc int, acc bool, ldb int) {
	var t [mr][nr]float32
	for k := 0; k < kc; k++ {
		ar := a[k*mr : k*mr+mr]
		br := b[k*ldb : k*ldb+nr]
		for r := 0; r < mr; r++ {
			x := ar[r]
			tr := &t[r]
			for j := range tr {
				tr[j] += x * br[j]
			}
		}
	}
	for r := 0; r < mr; r++ {
		row := c[r*ldc : r*ldc+nr]
		if acc {
			for j := range row {
				row[j] += t[r][j]
			}
		} else {
			copy(row, t[r][:])
		}
	}
}

// microTile computes a rows×cols tile (rows ≤ mr, cols ≤ nr) of C; B's
// rows are ldb floats apart.
func microTile(kc int, a, b, c []float32, ldc, rows, cols int, acc bool, tmp *Tile, ldb int) {
	if rows == mr && cols == nr {
		tile16(kc, a, b, c, ldc, acc, ldb)
		return
	}
	tile16(kc, a, b, tmp[:], nr, false, ldb)
	for r := 0; r < rows; r++ {
		row := c[r*ldc : r*ldc+cols]
		src := tmp[r*nr : r*nr+cols]
		if acc {
			for j := range row {
				row[j] += src[j]
			}
		} else {
			copy(row, src)
		}
	}
}

// tile16 computes one full 6×16 tile with the selected kernel.
func tile16(kc int, a, b, c []float32, ldc int, acc bool, ldb int) {
	switch kernel {
	case AVX512:
		kernelAVX512x16(kc, &a[0], &b[0], &c[0], ldc, acc, ldb)
	case AVX2:
		kernelAVX2(kc, &a[0], &b[0], &c[0], ldc, acc, ldb)
	default:
		kernelGo(kc, a, b, c, ldc, acc, ldb)
	}
}

// Block computes C[m0:m1, j0:j0+n] (+)= Apacked · B for one block of
// columns, packing B through pack(dst, k0, kc). ap is A packed by PackA
// for all K; bbuf must hold KC*roundup(n, NR) floats. When direct is
// not nil, B is read in place instead for the full panels: direct[k*ldb+j]
// is B(k, j) of the block (a 1×1 convolution's input), and only a partial
// last panel is packed. m0 must be a multiple of MR.
func Block(ap []float32, K, m0, m1, n int, c []float32, ldc int, acc bool,
	bbuf []float32, tmp *Tile, pack func(dst []float32, k0, kc int), direct []float32, ldb int) {
	if direct != nil && kernel != Go {
		full := n / nr * nr
		for k0 := 0; k0 < K; k0 += kcBlock {
			kc := min(K-k0, kcBlock)
			if full < n {
				PackB(bbuf, direct, k0, kc, full, n-full, ldb, 1)
			}
			a := acc || k0 > 0
			for i := m0; i < m1; i += mr {
				rows := min(m1-i, mr)
				apanel := ap[(i/mr)*K*mr+k0*mr:]
				q := 0
				if kernel == AVX512 && rows == mr {
					for ; (q+2)*nr <= full; q += 2 {
						kernelAVX512(kc, &apanel[0], &direct[k0*ldb+q*nr], &c[i*ldc+q*nr], ldc, a, ldb, nr)
					}
				}
				for ; q*nr < full; q++ {
					microTile(kc, apanel, direct[k0*ldb+q*nr:], c[i*ldc+q*nr:], ldc, rows, nr, a, tmp, ldb)
				}
				if full < n {
					microTile(kc, apanel, bbuf, c[i*ldc+full:], ldc, rows, n-full, a, tmp, nr)
				}
			}
		}
		return
	}
	for k0 := 0; k0 < K; k0 += kcBlock {
		kc := min(K-k0, kcBlock)
		pack(bbuf, k0, kc)
		panels(ap, K, m0, m1, n, c, ldc, acc || k0 > 0, bbuf, tmp, k0, kc)
	}
}

// panels computes C[m0:m1, 0:n] (+)= A[:, k0:k0+kc] · B for one packed B
// block bp (kc rows, panels of nr columns, as PackB writes it).
func panels(ap []float32, K, m0, m1, n int, c []float32, ldc int, a bool, bp []float32, tmp *Tile, k0, kc int) {
	for i := m0; i < m1; i += mr {
		rows := min(m1-i, mr)
		apanel := ap[(i/mr)*K*mr+k0*mr:]
		q := 0
		if kernel == AVX512 && rows == mr {
			// two full B panels at a time
			for ; (q+2)*nr <= n; q += 2 {
				kernelAVX512(kc, &apanel[0], &bp[q*kc*nr], &c[i*ldc+q*nr], ldc, a, nr, kc*nr)
			}
		}
		for ; q*nr < n; q++ {
			cols := min(n-q*nr, nr)
			microTile(kc, apanel, bp[q*kc*nr:], c[i*ldc+q*nr:], ldc, rows, cols, a, tmp, nr)
		}
	}
}

// PackedBSize is the length of a K×N B packed by PackBAll.
func PackedBSize(K, N int) int { return K * ((N + nr - 1) / nr * nr) }

// PackBAll packs all of a K×N matrix B (element (k,j) at b[k*rs+j*cs]) as
// SerialPacked reads it: for each block of NC columns, each block of KC
// rows as PackB packs it, one after the other.
func PackBAll(dst, b []float32, K, N, rs, cs int) {
	off := 0
	for j0 := 0; j0 < N; j0 += ncBlock {
		n := min(N-j0, ncBlock)
		for k0 := 0; k0 < K; k0 += kcBlock {
			kc := min(K-k0, kcBlock)
			PackB(dst[off:], b, k0, kc, j0, n, rs, cs)
			off += kc * ((n + nr - 1) / nr * nr)
		}
	}
}

// Scratch holds the packing buffers of one single-threaded multiply.
type Scratch struct {
	Ap, Bp []float32 // packed A (PackedASize) and one packed B block (KC*NC)
	Tmp    Tile
}

// NewScratch returns scratch for an M×K A.
func NewScratch(M, K int) *Scratch {
	s := &Scratch{}
	s.Grow(M, K)
	return s
}

// Grow makes the scratch large enough for an M×K packed A.
func (s *Scratch) Grow(M, K int) {
	if n := PackedASize(M, K); cap(s.Ap) < n {
		s.Ap = make([]float32, n)
	} else {
		s.Ap = s.Ap[:n]
	}
	if len(s.Bp) < kcBlock*ncBlock {
		s.Bp = make([]float32, kcBlock*ncBlock)
	}
}

// Serial computes C = alpha·op(A)·op(B) + beta·C (C is M×N with row
// stride ldc) on the calling goroutine with scratch s (grown for M×K
// beforehand: it does not allocate). A's element (i,k) is at
// a[i*ars+k*acs], B's (k,j) at b[k*brs+j*bcs].
func Serial(M, N, K int, alpha float32, a []float32, ars, acs int, b []float32, brs, bcs int,
	beta float32, c []float32, ldc int, s *Scratch) {
	scaleC(M, N, beta, c, ldc)
	if K == 0 || M == 0 || N == 0 {
		return
	}
	PackA(s.Ap, a, M, K, ars, acs, alpha)
	for j0 := 0; j0 < N; j0 += ncBlock {
		n := min(N-j0, ncBlock)
		Block(s.Ap, K, 0, M, n, c[j0:], ldc, true, s.Bp, &s.Tmp, func(dst []float32, k0, kc int) {
			PackB(dst, b, k0, kc, j0, n, brs, bcs)
		}, nil, 0)
	}
}

// SerialPacked is Serial with B packed beforehand by PackBAll (a constant
// B, such as a layer's weights, packed once), bit for bit the same result.
func SerialPacked(M, N, K int, alpha float32, a []float32, ars, acs int, bp []float32,
	beta float32, c []float32, ldc int, s *Scratch) {
	scaleC(M, N, beta, c, ldc)
	if K == 0 || M == 0 || N == 0 {
		return
	}
	PackA(s.Ap, a, M, K, ars, acs, alpha)
	off := 0
	for j0 := 0; j0 < N; j0 += ncBlock {
		n := min(N-j0, ncBlock)
		for k0 := 0; k0 < K; k0 += kcBlock {
			kc := min(K-k0, kcBlock)
			panels(s.Ap, K, 0, M, n, c[j0:], ldc, true, bp[off:], &s.Tmp, k0, kc)
			off += kc * ((n + nr - 1) / nr * nr)
		}
	}
}

// scaleC sets C = beta·C (beta 0: zeros).
func scaleC(M, N int, beta float32, c []float32, ldc int) {
	if beta == 1 {
		return
	}
	for i := 0; i < M; i++ {
		row := c[i*ldc : i*ldc+N]
		if beta == 0 {
			clear(row)
		} else {
			for j := range row {
				row[j] *= beta
			}
		}
	}
}
