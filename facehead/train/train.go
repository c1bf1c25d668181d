package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"gonum.org/v1/gonum/mat"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/facever/facever/facehead"
	"github.com/facever/facever/margin"
)

// Loss names accepted by Config.Loss.
const (
	LossSoftmax    = "softmax"
	LossArcFace    = "arcface"
	LossCosFace    = "cosface"
	LossSphereFace = "sphereface"
	LossCenter     = "center"
	LossCombined   = "combined"

	LossContrastive     = "contrastive"
	LossTriplet         = "triplet"
	LossNPair           = "npair"
	LossLifted          = "lifted"
	LossMultiSimilarity = "multisimilarity"
	LossProxyNCA        = "proxynca"
	LossProxyAnchor     = "proxyanchor"
	LossSoftTriple      = "softtriple"
)

// Losses lists the losses Train accepts: the classification (margin) heads
// in the order the papers came out (softmax first as the baseline), then the
// pair losses, then the proxy losses.
var Losses = []string{
	LossSoftmax, LossCenter, LossSphereFace, LossCosFace, LossArcFace, LossCombined,
	LossContrastive, LossTriplet, LossNPair, LossLifted, LossMultiSimilarity,
	LossProxyNCA, LossProxyAnchor, LossSoftTriple,
}

// PairLosses lists the losses that compare the batch's samples with one
// another and read no class weights; Train draws their batches as P
// identities × K photos (Config.PerIdentity).
var PairLosses = []string{LossContrastive, LossTriplet, LossNPair, LossLifted, LossMultiSimilarity}

// Config configures Train. Zero values select the defaults named on
// each field (the papers' where there is one); DefaultConfig returns
// them filled in.
type Config struct {
	// Loss is one of Losses.
	Loss string

	// Scale is s of arcface, cosface and combined (default 64) and the
	// scale of proxynca (default 9).
	Scale float64
	// Margin is m of arcface (default 0.5, Deng et al. 2019), cosface
	// (default 0.35, Wang et al. 2018), triplet (0.1), lifted (1),
	// multisimilarity (λ, 0.5) and proxyanchor (δ, 0.1).
	Margin float64
	// EasyMargin selects ArcFace's easy_margin variant.
	EasyMargin bool
	// M1, M2, M3 are the combined margin's (ArcFace paper, eq. 4); all zero
	// selects (1, 0.3, 0.2), the paper's "CM1" row of Table 1.
	M1, M2, M3 float64
	// SphereM is SphereFace's m ∈ {1, 2, 3, 4} (default 4, Liu et al. 2017).
	SphereM int
	// Anneal is SphereFace's λ schedule, one value per training step
	// (default margin.DefaultAnneal(): base 1000, γ 0.12, power 1, min 5).
	Anneal margin.Anneal
	// CenterLambda is the Center loss weight λ (default 0.003) and
	// CenterAlpha the centre learning rate α (default 0.5), Wen et al. 2016.
	CenterLambda, CenterAlpha float64

	// PosMargin and NegMargin are the contrastive loss's m_p (default 1)
	// and m_n (default 0.5), as cosines.
	PosMargin, NegMargin float64
	// Mining is the triplet loss's: "all", "hard" or "semi-hard" (default).
	Mining string
	// NPairVariant is the N-pair loss's: "mc" (default) or "ovo".
	NPairVariant string
	// Alpha and Beta are multisimilarity's α (default 2) and β (50); Alpha
	// is also proxyanchor's α (default 32).
	Alpha, Beta float64
	// MSMining is multisimilarity's pair-mining ε (Wang et al. 2019, §4.2;
	// the paper uses 0.1); 0, the default, uses every pair.
	MSMining float64
	// SoftTripleK is SoftTriple's number of centres per class (default 2:
	// a face identity is one mode; the paper's 10 suits fine-grained
	// categories). SoftTripleGamma, SoftTripleLambda, SoftTripleDelta and
	// SoftTripleTau default to the paper's γ 0.1, λ 20, δ 0.01, τ 0.2.
	SoftTripleK                                                       int
	SoftTripleGamma, SoftTripleLambda, SoftTripleDelta, SoftTripleTau float64
	// ProxyLRScale multiplies the learning rate of the class weights and
	// proxies (default 1). Proxy Anchor's paper trains its proxies 100×
	// faster than the network (Kim et al. 2020, §5.1).
	ProxyLRScale float64
	// PerIdentity is K, the photos per identity in the batches of the pair
	// losses (default 4): each batch holds BatchSize/K identities × K photos.
	PerIdentity int

	// OutDim is the embedding size d′ ≤ d (default d). With d′ = d the
	// projection starts as the identity, with d′ < d as the top-d′ principal
	// axes of the training features, so training starts from the raw
	// backbone's geometry.
	OutDim int
	// BatchNorm adds a BatchNorm layer after the projection (folded into it
	// when training ends).
	BatchNorm bool

	// Epochs is the number of passes over the data (default 20).
	Epochs int
	// BatchSize is the mini-batch size (default 128, capped at the number
	// of samples).
	BatchSize int
	// LR is AdamW's learning rate (default 1e-3), cosine-decayed to 1/100 of
	// it over training.
	LR float64
	// WeightDecay is AdamW's decoupled weight decay on the projection and
	// class weights (default 5e-4; negative for none).
	WeightDecay float64
	// Seed makes training deterministic: same data, config and seed, same
	// head, bit for bit.
	Seed int64

	// BackboneSHA256 is recorded in the head (optional here; Head.Save
	// needs it, Head.SetBackbone can set it later).
	BackboneSHA256 string
	// Progress, if set, is called after every step.
	Progress func(Progress)
}

// DefaultConfig returns the defaults for a loss.
func DefaultConfig(loss string) Config {
	c := Config{Loss: loss}
	c.fill(0)
	return c
}

func (c *Config) fill(d int) {
	if c.Scale == 0 {
		c.Scale = margin.DefaultScale
		if c.Loss == LossProxyNCA {
			c.Scale = margin.DefaultProxyNCAScale
		}
	}
	if c.Margin == 0 {
		switch c.Loss {
		case LossArcFace:
			c.Margin = margin.DefaultArcFaceMargin
		case LossCosFace:
			c.Margin = margin.DefaultCosFaceMargin
		case LossTriplet:
			c.Margin = margin.DefaultTripletMargin
		case LossLifted:
			c.Margin = margin.DefaultLiftedMargin
		case LossMultiSimilarity:
			c.Margin = margin.DefaultMSMargin
		case LossProxyAnchor:
			c.Margin = margin.DefaultProxyAnchorMargin
		}
	}
	if c.PosMargin == 0 && c.NegMargin == 0 {
		c.PosMargin, c.NegMargin = margin.DefaultContrastivePosMargin, margin.DefaultContrastiveNegMargin
	}
	if c.Mining == "" {
		c.Mining = "semi-hard"
	}
	if c.NPairVariant == "" {
		c.NPairVariant = "mc"
	}
	if c.Alpha == 0 {
		c.Alpha = margin.DefaultMSAlpha
		if c.Loss == LossProxyAnchor {
			c.Alpha = margin.DefaultProxyAnchorAlpha
		}
	}
	if c.Beta == 0 {
		c.Beta = margin.DefaultMSBeta
	}
	if c.SoftTripleK == 0 {
		c.SoftTripleK = 2
	}
	if c.SoftTripleGamma == 0 {
		c.SoftTripleGamma = margin.DefaultSoftTripleGamma
	}
	if c.SoftTripleLambda == 0 {
		c.SoftTripleLambda = margin.DefaultSoftTripleLambda
	}
	if c.SoftTripleDelta == 0 {
		c.SoftTripleDelta = margin.DefaultSoftTripleDelta
	}
	if c.SoftTripleTau == 0 {
		c.SoftTripleTau = margin.DefaultSoftTripleTau
	}
	if c.PerIdentity == 0 {
		c.PerIdentity = 4
	}
	if c.ProxyLRScale == 0 {
		c.ProxyLRScale = 1
	}
	if c.M1 == 0 && c.M2 == 0 && c.M3 == 0 {
		c.M1, c.M2, c.M3 = 1, 0.3, 0.2
	}
	if c.SphereM == 0 {
		c.SphereM = margin.DefaultSphereFaceM
	}
	if c.Anneal == (margin.Anneal{}) {
		c.Anneal = margin.DefaultAnneal()
	}
	if c.CenterLambda == 0 {
		c.CenterLambda = margin.DefaultCenterLambda
	}
	if c.CenterAlpha == 0 {
		c.CenterAlpha = margin.DefaultCenterAlpha
	}
	if c.OutDim == 0 {
		c.OutDim = d
	}
	if c.Epochs == 0 {
		c.Epochs = 20
	}
	if c.BatchSize == 0 {
		c.BatchSize = 128
	}
	if c.LR == 0 {
		c.LR = 1e-3
	}
	if c.WeightDecay == 0 {
		c.WeightDecay = 5e-4
	}
	if c.WeightDecay < 0 {
		c.WeightDecay = 0
	}
}

// head builds the margin head for the config; classes and centres are only
// used by the Center loss.
func (c *Config) head(centers [][]float64) (margin.Loss, error) {
	switch c.Loss {
	case LossSoftmax:
		return margin.NewSoftmax(), nil
	case LossArcFace:
		return margin.NewArcFace(c.Scale, c.Margin, c.EasyMargin)
	case LossCosFace:
		return margin.NewCosFace(c.Scale, c.Margin)
	case LossSphereFace:
		return margin.NewSphereFace(c.SphereM, c.Anneal.Lambda(0))
	case LossCenter:
		return margin.NewCenterLoss(c.CenterLambda, centers)
	case LossCombined:
		return margin.NewCombined(c.Scale, c.M1, c.M2, c.M3)
	case LossContrastive:
		return margin.NewContrastive(c.PosMargin, c.NegMargin)
	case LossTriplet:
		mining, err := margin.ParseMining(c.Mining)
		if err != nil {
			return nil, err
		}
		return margin.NewTriplet(c.Margin, mining)
	case LossNPair:
		v, err := margin.ParseNPairVariant(c.NPairVariant)
		if err != nil {
			return nil, err
		}
		return margin.NewNPair(v)
	case LossLifted:
		return margin.NewLiftedStructure(c.Margin)
	case LossMultiSimilarity:
		h, err := margin.NewMultiSimilarity(c.Alpha, c.Beta, c.Margin)
		if err != nil || c.MSMining == 0 {
			return h, err
		}
		return h.WithMining(c.MSMining)
	case LossProxyNCA:
		return margin.NewProxyNCA(c.Scale)
	case LossProxyAnchor:
		return margin.NewProxyAnchor(c.Alpha, c.Margin)
	case LossSoftTriple:
		return margin.NewSoftTriple(c.SoftTripleK, c.SoftTripleGamma, c.SoftTripleLambda, c.SoftTripleDelta, c.SoftTripleTau)
	}
	return nil, fmt.Errorf("unknown loss %q (want one of %v)", c.Loss, Losses)
}

// Progress is what Train reports after each step.
type Progress struct {
	Epoch, Epochs        int           // 1-based epoch and total
	Step, StepsPerEpoch  int           // 1-based step within the epoch
	Loss, Accuracy       float64       // running means over the epoch so far
	SamplesPerSec        float64       // training speed so far (steps only)
	LR                   float64       // learning rate of the step
	Lambda               float64       // SphereFace's λ (0 for other losses)
	Elapsed              time.Duration // since Train was called
	EpochDone, TrainDone bool          // last step of the epoch, of training
}

// EpochStats is one epoch's mean training loss and accuracy.
type EpochStats struct {
	Epoch    int     `json:"epoch"`    // 1-based
	Loss     float64 `json:"loss"`     // mean over the epoch's steps
	Accuracy float64 `json:"accuracy"` // mean over the epoch's steps
}

// Report summarises a training run. Accuracy is the fraction of
// training samples whose own class has the largest logit, margin included
// for the margin losses; for the proxy losses, whose nearest proxy is of
// their class; for the pair losses, whose most similar other sample in the
// batch is of their identity (in-batch recall@1).
type Report struct {
	Loss          string             `json:"loss"`            // Config.Loss
	Params        map[string]float64 `json:"params"`          // as recorded in the head
	Identities    int                `json:"identities"`      // training identities
	Samples       int                `json:"samples"`         // training features
	InDim         int                `json:"in_dim"`          // d
	OutDim        int                `json:"out_dim"`         // d′
	Epochs        int                `json:"epochs"`          // passes
	Steps         int                `json:"steps"`           // optimiser steps
	FinalLoss     float64            `json:"final_loss"`      // last epoch's mean loss
	FinalAccuracy float64            `json:"final_accuracy"`  // last epoch's accuracy
	SamplesPerSec float64            `json:"samples_per_sec"` // over the training steps (setup excluded)
	Duration      time.Duration      `json:"duration_ns"`     // all of Train
	GEMM          string             `json:"gemm"`            // margin.GEMMBackend()
	History       []EpochStats       `json:"history"`         // one entry per epoch
}

// Train learns a projection (Linear d→d′ with bias, optionally followed by
// BatchNorm) with the loss cfg.Loss, on cached backbone features (N×d, as the
// backbone gives them) and their identity labels (any integers; each
// distinct value is an identity). The margin and proxy losses learn class
// weights (proxies) jointly with it; the pair losses have none. It returns
// the projection as a Head (BatchNorm folded in; class weights are
// discarded: verification uses the normalised projected embedding).
//
// The class weights start as the normalised class means of the initial
// embeddings (weight imprinting, Qi et al., CVPR 2018; SoftTriple's K
// centres per class as that mean plus a little noise). Optimisation is AdamW
// (Loshchilov & Hutter, ICLR 2019) on shuffled mini-batches, the last
// incomplete batch of each epoch dropped; the pair losses draw P identities
// × K photos per batch instead (see PairLosses), as many batches per epoch
// as the shuffled ones would be. The result is deterministic for a given
// seed.
func Train(features [][]float32, labels []int, cfg Config) (*facehead.Head, Report, error) {
	start := time.Now()
	var rep Report
	if len(features) == 0 {
		return nil, rep, fmt.Errorf("train: no features")
	}
	if len(labels) != len(features) {
		return nil, rep, fmt.Errorf("train: %d labels for %d features", len(labels), len(features))
	}
	d := len(features[0])
	if d == 0 {
		return nil, rep, fmt.Errorf("train: empty features")
	}
	for i, f := range features {
		if len(f) != d {
			return nil, rep, fmt.Errorf("train: feature %d has %d values, feature 0 has %d", i, len(f), d)
		}
		for _, v := range f {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, rep, fmt.Errorf("train: feature %d is not finite", i)
			}
		}
	}
	cfg.fill(d)
	if err := cfg.validate(d); err != nil {
		return nil, rep, fmt.Errorf("train: %w", err)
	}
	y, classes := remap(labels)
	if classes < 2 {
		return nil, rep, fmt.Errorf("train: %d identities; need at least 2", classes)
	}
	n, dOut := len(features), cfg.OutDim
	batch := min(cfg.BatchSize, n)
	var pk *pkSampler
	if slices.Contains(PairLosses, cfg.Loss) {
		var err error
		if pk, err = newPKSampler(y, classes, cfg.BatchSize, cfg.PerIdentity); err != nil {
			return nil, rep, fmt.Errorf("train: %s: %w", cfg.Loss, err)
		}
		batch = pk.p * pk.k
	}
	if cfg.BatchNorm && batch < 2 {
		return nil, rep, fmt.Errorf("train: BatchNorm needs batches of at least 2 samples")
	}
	steps := max(n/batch, 1)
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x9e3779b97f4a7c15))

	// Parameters: projection P (d′×(d+1), last column the bias), optional
	// BatchNorm γ, β, class weights W (C×d′).
	proj := initProjection(features, dOut)
	var gamma, beta []float32
	if cfg.BatchNorm {
		gamma, beta = make([]float32, dOut), make([]float32, dOut)
		for j := range gamma {
			gamma[j] = 1
		}
	}
	emb := embedAll(features, proj, dOut, gamma, beta)
	means := classMeans(emb, y, classes, dOut)
	mh, err := cfg.head(means)
	if err != nil {
		return nil, rep, fmt.Errorf("train: %w", err)
	}
	// K rows of W per class (SoftTriple's centres), none for pair losses.
	perClass := margin.WeightRows(mh, 1)
	wInit := make([]float32, classes*perClass*dOut)
	for c, m := range means {
		if perClass == 0 {
			break
		}
		norm := 0.0
		for _, v := range m {
			norm += v * v
		}
		// Unit rows for the normalised heads; ‖W_j‖ = 10 for the losses on
		// raw logits W·x (softmax, Center loss), so that their initial
		// logits span about ±10.
		k := 1 / math.Sqrt(max(norm, 1e-24))
		if cfg.Loss == LossSoftmax || cfg.Loss == LossCenter {
			k *= 10
		}
		for t := 0; t < perClass; t++ {
			row := wInit[(c*perClass+t)*dOut : (c*perClass+t+1)*dOut]
			for j, v := range m {
				row[j] = float32(v * k)
			}
			if perClass > 1 {
				// SoftTriple's centres of one class start apart (noise of
				// norm about 0.1): identical centres would get identical
				// gradients and never separate.
				sd := 0.1 / math.Sqrt(float64(dOut))
				for j := range row {
					row[j] += float32(sd * rng.NormFloat64())
				}
			}
		}
	}
	sphere, _ := mh.(*margin.SphereFace)
	center, _ := mh.(*margin.CenterLoss)

	g := gorgonia.NewGraph()
	xbuf := make([]float32, batch*(d+1))
	x := gorgonia.NewMatrix(g, tensor.Float32, gorgonia.WithShape(batch, d+1), gorgonia.WithName("x"),
		gorgonia.WithValue(tensor.New(tensor.WithShape(batch, d+1), tensor.WithBacking(xbuf))))
	pN := gorgonia.NewMatrix(g, tensor.Float32, gorgonia.WithShape(dOut, d+1), gorgonia.WithName("proj"),
		gorgonia.WithValue(tensor.New(tensor.WithShape(dOut, d+1), tensor.WithBacking(proj))))
	learn := gorgonia.Nodes{pN}
	decay := []bool{true}
	lrScale := []float64{1}
	var wN *gorgonia.Node
	if perClass > 0 {
		rows := classes * perClass
		wN = gorgonia.NewMatrix(g, tensor.Float32, gorgonia.WithShape(rows, dOut), gorgonia.WithName("w"),
			gorgonia.WithValue(tensor.New(tensor.WithShape(rows, dOut), tensor.WithBacking(wInit))))
		learn, decay, lrScale = append(learn, wN), append(decay, true), append(lrScale, cfg.ProxyLRScale)
	}
	z, err := margin.MatMulT(x, pN, true)
	if err != nil {
		return nil, rep, fmt.Errorf("train: %w", err)
	}
	if cfg.BatchNorm {
		gN := gorgonia.NewVector(g, tensor.Float32, gorgonia.WithShape(dOut), gorgonia.WithName("bn_gamma"),
			gorgonia.WithValue(tensor.New(tensor.WithShape(dOut), tensor.WithBacking(gamma))))
		bN := gorgonia.NewVector(g, tensor.Float32, gorgonia.WithShape(dOut), gorgonia.WithName("bn_beta"),
			gorgonia.WithValue(tensor.New(tensor.WithShape(dOut), tensor.WithBacking(beta))))
		if z, err = batchNorm(z, gN, bN); err != nil {
			return nil, rep, fmt.Errorf("train: %w", err)
		}
		learn = append(learn, gN, bN)
		decay = append(decay, false, false)
		lrScale = append(lrScale, 1, 1)
	}
	lab := margin.NewLabels(classes)
	cost, err := mh.Build(z, wN, lab)
	if err != nil {
		return nil, rep, fmt.Errorf("train: %w", err)
	}
	if _, err := gorgonia.Grad(cost, learn...); err != nil {
		return nil, rep, fmt.Errorf("train: gradient: %w", err)
	}
	vm := gorgonia.NewTapeMachine(g, gorgonia.BindDualValues(learn...))
	defer vm.Close()

	opt := newAdamW(learn, decay, lrScale, cfg.WeightDecay)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	by := make([]int, batch)
	total := cfg.Epochs * steps
	iter := 0
	loopStart := time.Now()
	for epoch := 1; epoch <= cfg.Epochs; epoch++ {
		if pk == nil {
			rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		var sumLoss float64
		var correct, seen int
		for s := 0; s < steps; s++ {
			var idx []int
			if pk != nil {
				idx = pk.draw(rng)
			} else {
				idx = order[s*batch:]
			}
			for k := 0; k < batch; k++ {
				i := idx[k]
				row := xbuf[k*(d+1) : (k+1)*(d+1)]
				copy(row, features[i])
				row[d] = 1
				by[k] = y[i]
			}
			if err := lab.Set(by); err != nil {
				return nil, rep, fmt.Errorf("train: %w", err)
			}
			lambda := 0.0
			if sphere != nil {
				lambda = cfg.Anneal.Lambda(iter)
				if err := sphere.SetLambda(lambda); err != nil {
					return nil, rep, fmt.Errorf("train: %w", err)
				}
			}
			if err := vm.RunAll(); err != nil {
				return nil, rep, fmt.Errorf("train: step %d: %w", iter, err)
			}
			loss := float64(cost.Value().Data().(float32))
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				return nil, rep, fmt.Errorf("train: loss diverged (%v) at epoch %d step %d; lower the learning rate", loss, epoch, s+1)
			}
			lr := cfg.LR * (0.01 + 0.99*0.5*(1+math.Cos(math.Pi*float64(iter)/float64(total))))
			if err := opt.step(lr); err != nil {
				return nil, rep, fmt.Errorf("train: %w", err)
			}
			if center != nil {
				if err := center.UpdateLastBatch(cfg.CenterAlpha); err != nil {
					return nil, rep, fmt.Errorf("train: %w", err)
				}
			}
			vm.Reset()
			iter++
			sumLoss += loss
			correct += lab.Correct()
			seen += batch
			if cfg.Progress != nil {
				el := time.Since(start)
				cfg.Progress(Progress{
					Epoch: epoch, Epochs: cfg.Epochs, Step: s + 1, StepsPerEpoch: steps,
					Loss: sumLoss / float64(s+1), Accuracy: float64(correct) / float64(seen),
					SamplesPerSec: float64(iter*batch) / time.Since(loopStart).Seconds(), LR: lr, Lambda: lambda, Elapsed: el,
					EpochDone: s == steps-1, TrainDone: s == steps-1 && epoch == cfg.Epochs,
				})
			}
		}
		rep.History = append(rep.History, EpochStats{Epoch: epoch, Loss: sumLoss / float64(steps), Accuracy: float64(correct) / float64(seen)})
	}

	loopTime := time.Since(loopStart)
	rep.Loss = cfg.Loss
	rep.Params = cfg.record(mh)
	rep.Identities, rep.Samples = classes, n
	if pk != nil {
		// Only identities with two or more photos are drawn.
		rep.Identities, rep.Samples = len(pk.ids), 0
		for _, id := range pk.ids {
			rep.Samples += len(pk.photos[id])
		}
	}
	rep.InDim, rep.OutDim = d, dOut
	rep.Epochs, rep.Steps = cfg.Epochs, iter
	last := rep.History[len(rep.History)-1]
	rep.FinalLoss, rep.FinalAccuracy = last.Loss, last.Accuracy
	rep.SamplesPerSec = float64(iter*batch) / loopTime.Seconds()
	rep.GEMM = margin.GEMMBackend()
	h, err := fold(features, proj, dOut, gamma, beta, facehead.HeadMeta{
		BackboneSHA256: cfg.BackboneSHA256, Loss: cfg.Loss, Params: rep.Params, BatchNorm: cfg.BatchNorm,
		Identities: rep.Identities, Samples: rep.Samples, FinalLoss: rep.FinalLoss, FinalAccuracy: rep.FinalAccuracy,
	})
	if err != nil {
		return nil, rep, fmt.Errorf("train: %w", err)
	}
	rep.Duration = time.Since(start)
	return h, rep, nil
}

func (c *Config) validate(d int) error {
	if !slices.Contains(Losses, c.Loss) {
		return fmt.Errorf("unknown loss %q (want one of %v)", c.Loss, Losses)
	}
	if c.OutDim < 1 || c.OutDim > d {
		return fmt.Errorf("output dimension %d not in [1, %d]", c.OutDim, d)
	}
	if c.Epochs < 1 || c.BatchSize < 1 {
		return fmt.Errorf("epochs %d and batch size %d must be positive", c.Epochs, c.BatchSize)
	}
	if math.IsNaN(c.LR) || math.IsInf(c.LR, 0) || c.LR <= 0 {
		return fmt.Errorf("learning rate %v", c.LR)
	}
	if math.IsNaN(c.WeightDecay) || math.IsInf(c.WeightDecay, 0) || c.WeightDecay*c.LR >= 1 {
		return fmt.Errorf("weight decay %v", c.WeightDecay)
	}
	if math.IsNaN(c.Scale + c.Margin + c.M1 + c.M2 + c.M3 + c.CenterLambda + c.CenterAlpha) {
		return fmt.Errorf("NaN hyper-parameter")
	}
	if slices.Contains(PairLosses, c.Loss) && c.PerIdentity < 2 {
		return fmt.Errorf("photos per identity K = %d: the pair losses need K ≥ 2", c.PerIdentity)
	}
	if math.IsNaN(c.ProxyLRScale) || math.IsInf(c.ProxyLRScale, 0) || c.ProxyLRScale < 0 || c.ProxyLRScale*c.LR*c.WeightDecay >= 1 {
		return fmt.Errorf("proxy learning-rate scale %v", c.ProxyLRScale)
	}
	if c.SoftTripleK < 1 {
		return fmt.Errorf("SoftTriple needs K ≥ 1 centres per class, got %d", c.SoftTripleK)
	}
	if c.CenterAlpha < 0 || c.CenterAlpha > 1 {
		return fmt.Errorf("centre rate α %v not in [0, 1]", c.CenterAlpha)
	}
	a := c.Anneal
	if a.Base < 0 || a.Min < 0 || a.Gamma < 0 || math.IsNaN(a.Base+a.Min+a.Gamma+a.Power) {
		return fmt.Errorf("bad SphereFace annealing %+v", a)
	}
	return nil
}

// record returns the loss's hyper-parameters and the training settings.
func (c *Config) record(h margin.Loss) map[string]float64 {
	p := map[string]float64{}
	for k, v := range h.Params() {
		p[k] = v
	}
	if c.Loss == LossSphereFace {
		p["anneal_base"], p["anneal_gamma"], p["anneal_power"], p["anneal_min"] = c.Anneal.Base, c.Anneal.Gamma, c.Anneal.Power, c.Anneal.Min
	}
	if c.Loss == LossCenter {
		p["alpha"] = c.CenterAlpha
	}
	if slices.Contains(PairLosses, c.Loss) {
		p["per_identity"] = float64(c.PerIdentity)
	}
	p["epochs"], p["batch_size"], p["lr"], p["weight_decay"] = float64(c.Epochs), float64(c.BatchSize), c.LR, c.WeightDecay
	p["out_dim"], p["seed"] = float64(c.OutDim), float64(c.Seed)
	if c.ProxyLRScale != 1 {
		p["proxy_lr_scale"] = c.ProxyLRScale
	}
	return p
}

// remap maps labels onto 0..C−1 in increasing label order.
func remap(labels []int) ([]int, int) {
	uniq := slices.Clone(labels)
	sort.Ints(uniq)
	uniq = slices.Compact(uniq)
	idx := make(map[int]int, len(uniq))
	for i, v := range uniq {
		idx[v] = i
	}
	out := make([]int, len(labels))
	for i, v := range labels {
		out[i] = idx[v]
	}
	return out, len(uniq)
}

// initProjection returns P (d′×(d+1), bias column zero): the identity when
// d′ = d, else the top-d′ principal axes of the features (uncentred second
// moment, so that cosines are preserved as well as they can be).
func initProjection(features [][]float32, dOut int) []float32 {
	d := len(features[0])
	p := make([]float32, dOut*(d+1))
	if dOut == d {
		for i := 0; i < d; i++ {
			p[i*(d+1)+i] = 1
		}
		return p
	}
	m := mat.NewSymDense(d, nil)
	row := make([]float64, d)
	for _, f := range features {
		for j, v := range f {
			row[j] = float64(v)
		}
		m.SymRankOne(m, 1/float64(len(features)), mat.NewVecDense(d, row))
	}
	var eig mat.EigenSym
	if !eig.Factorize(m, true) {
		// Fall back to the first d′ axes.
		for i := 0; i < dOut; i++ {
			p[i*(d+1)+i] = 1
		}
		return p
	}
	var vecs mat.Dense
	eig.VectorsTo(&vecs)
	// Eigenvalues come in increasing order: take the last d′ columns, with
	// a deterministic sign (largest component positive).
	for i := 0; i < dOut; i++ {
		col := d - 1 - i
		sign, best := 1.0, 0.0
		for j := 0; j < d; j++ {
			if v := vecs.At(j, col); math.Abs(v) > best {
				best, sign = math.Abs(v), math.Copysign(1, v)
			}
		}
		for j := 0; j < d; j++ {
			p[i*(d+1)+j] = float32(sign * vecs.At(j, col))
		}
	}
	return p
}

// embedAll returns P·[x; 1] for every feature, BatchNorm-standardised with
// the population statistics when gamma is set.
func embedAll(features [][]float32, proj []float32, dOut int, gamma, beta []float32) [][]float64 {
	d := len(features[0])
	out := make([][]float64, len(features))
	if isIdentity(proj, d, dOut) {
		for i, f := range features {
			o := make([]float64, d)
			for j, v := range f {
				o[j] = float64(v)
			}
			out[i] = o
		}
	} else {
		// [x 1]·Pᵀ for all samples at once (gonum's blocked, parallel GEMM).
		xs := mat.NewDense(len(features), d+1, nil)
		for i, f := range features {
			row := xs.RawRowView(i)
			for j, v := range f {
				row[j] = float64(v)
			}
			row[d] = 1
		}
		ps := mat.NewDense(dOut, d+1, nil)
		for k, v := range proj {
			ps.RawMatrix().Data[k] = float64(v)
		}
		var z mat.Dense
		z.Mul(xs, ps.T())
		for i := range out {
			out[i] = z.RawRowView(i)
		}
	}
	if gamma != nil {
		mean, inv := popStats(out, dOut)
		for _, o := range out {
			for j := range o {
				o[j] = float64(gamma[j])*(o[j]-mean[j])*inv[j] + float64(beta[j])
			}
		}
	}
	return out
}

// isIdentity reports whether proj is [I 0] (the initial projection with d′ = d).
func isIdentity(proj []float32, d, dOut int) bool {
	if d != dOut {
		return false
	}
	for r := 0; r < dOut; r++ {
		for j := 0; j <= d; j++ {
			want := float32(0)
			if j == r {
				want = 1
			}
			if proj[r*(d+1)+j] != want {
				return false
			}
		}
	}
	return true
}

func popStats(z [][]float64, dOut int) (mean, inv []float64) {
	mean, inv = make([]float64, dOut), make([]float64, dOut)
	for _, o := range z {
		for j, v := range o {
			mean[j] += v
		}
	}
	for j := range mean {
		mean[j] /= float64(len(z))
	}
	for _, o := range z {
		for j, v := range o {
			inv[j] += (v - mean[j]) * (v - mean[j])
		}
	}
	for j := range inv {
		inv[j] = 1 / math.Sqrt(inv[j]/float64(len(z))+bnEps)
	}
	return mean, inv
}

func classMeans(emb [][]float64, y []int, classes, dOut int) [][]float64 {
	means := make([][]float64, classes)
	counts := make([]int, classes)
	for c := range means {
		means[c] = make([]float64, dOut)
	}
	for i, e := range emb {
		for j, v := range e {
			means[y[i]][j] += v
		}
		counts[y[i]]++
	}
	for c, m := range means {
		for j := range m {
			m[j] /= float64(max(counts[c], 1))
		}
	}
	return means
}

// fold returns the inference head: W = diag(γ·inv)·P, b = γ·inv·(p_b − μ) + β
// with BatchNorm's population statistics over the training features (exact,
// rather than a running average), or P and its bias column without it.
func fold(features [][]float32, proj []float32, dOut int, gamma, beta []float32, meta facehead.HeadMeta) (*facehead.Head, error) {
	d := len(features[0])
	w, b := make([]float32, dOut*d), make([]float32, dOut)
	var mean, inv []float64
	if gamma != nil {
		mean, inv = popStats(embedAll(features, proj, dOut, nil, nil), dOut)
	}
	for r := 0; r < dOut; r++ {
		pr := proj[r*(d+1) : (r+1)*(d+1)]
		k, br := 1.0, float64(pr[d])
		if gamma != nil {
			k = float64(gamma[r]) * inv[r]
			br = k*(br-mean[r]) + float64(beta[r])
		}
		for j := 0; j < d; j++ {
			w[r*d+j] = float32(k * float64(pr[j]))
		}
		b[r] = float32(br)
	}
	return facehead.NewHead(d, dOut, w, b, meta)
}
