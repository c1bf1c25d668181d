package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/facever/facever/facehead"
	"github.com/facever/facever/margin"
)

// Config configures Train. Zero values select the defaults named on each
// field; the loss's hyper-parameters are margin's (margin.New).
type Config struct {
	// Loss is the loss's name, one of margin.Names().
	Loss string
	// LossParams are its hyper-parameters by key (margin.Spec.Params);
	// those left out take margin's defaults for the loss.
	LossParams margin.Params

	// PerIdentity is K, the photos per identity in the batches of the pair
	// losses (default 4): each batch holds BatchSize/K identities × K photos.
	PerIdentity int
	// ProxyLRScale multiplies the learning rate of the class weights and
	// proxies (default 1). Proxy Anchor's paper trains its proxies 100×
	// faster than the network (Kim et al. 2020, §5.1).
	ProxyLRScale float64

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

// Defaults of Config's training settings.
const (
	DefaultPerIdentity = 4
	DefaultEpochs      = 20
	DefaultBatchSize   = 128
	DefaultLR          = 1e-3
	DefaultWeightDecay = 5e-4
)

// fill sets the zero fields to their defaults for features of dimension d.
func (c *Config) fill(d int) {
	if c.PerIdentity == 0 {
		c.PerIdentity = DefaultPerIdentity
	}
	if c.ProxyLRScale == 0 {
		c.ProxyLRScale = 1
	}
	if c.OutDim == 0 {
		c.OutDim = d
	}
	if c.Epochs == 0 {
		c.Epochs = DefaultEpochs
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.LR == 0 {
		c.LR = DefaultLR
	}
	if c.WeightDecay == 0 {
		c.WeightDecay = DefaultWeightDecay
	}
	if c.WeightDecay < 0 {
		c.WeightDecay = 0
	}
}

// validate checks the training settings (the loss's are margin.New's).
func (c *Config) validate(spec margin.Spec, d int) error {
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
	if spec.Kind == margin.Pair && c.PerIdentity < 2 {
		return fmt.Errorf("photos per identity K = %d: the pair losses need K ≥ 2", c.PerIdentity)
	}
	if math.IsNaN(c.ProxyLRScale) || math.IsInf(c.ProxyLRScale, 0) || c.ProxyLRScale < 0 || c.ProxyLRScale*c.LR*c.WeightDecay >= 1 {
		return fmt.Errorf("proxy learning-rate scale %v", c.ProxyLRScale)
	}
	return nil
}

// record returns the loss's hyper-parameters and the training settings.
func (c *Config) record(kind margin.Kind, l margin.Loss) map[string]float64 {
	p := map[string]float64{}
	for k, v := range l.Params() {
		p[k] = v
	}
	if kind == margin.Pair {
		p["per_identity"] = float64(c.PerIdentity)
	}
	p["epochs"], p["batch_size"], p["lr"], p["weight_decay"] = float64(c.Epochs), float64(c.BatchSize), c.LR, c.WeightDecay
	p["out_dim"], p["seed"] = float64(c.OutDim), float64(c.Seed)
	if c.ProxyLRScale != 1 {
		p["proxy_lr_scale"] = c.ProxyLRScale
	}
	return p
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

// Report summarises a training run. Accuracy is the fraction of training
// samples whose own class has the largest logit, margin included for the
// margin losses; for the proxy losses, whose nearest proxy is of their
// class; for the pair losses, whose most similar other sample in the batch
// is of their identity (in-batch recall@1).
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
// × K photos per batch instead, as many batches per epoch as the shuffled
// ones would be. The result is deterministic for a given seed.
//
// The steps: prepare checks the data and draws the batches' plan; newModel
// sets the parameters' starting values and builds the loss's graph;
// epochs runs the optimiser; summarise fills the report from it; and
// writeHead folds the projection into the head.
func Train(features [][]float32, labels []int, cfg Config) (*facehead.Head, Report, error) {
	start := time.Now()
	data, err := prepare(features, labels, &cfg)
	if err != nil {
		return nil, Report{}, fmt.Errorf("train: %w", err)
	}
	m, err := newModel(data, &cfg)
	if err != nil {
		return nil, Report{}, fmt.Errorf("train: %w", err)
	}
	defer m.close()
	hist, loopTime, err := m.epochs(data, &cfg, start)
	if err != nil {
		return nil, Report{}, fmt.Errorf("train: %w", err)
	}
	rep := m.summarise(data, &cfg, hist, loopTime)
	h, err := m.writeHead(data, &cfg, rep)
	if err != nil {
		return nil, rep, fmt.Errorf("train: %w", err)
	}
	rep.Duration = time.Since(start)
	return h, rep, nil
}

// trainingSet is the checked training data and how its batches are drawn.
type trainingSet struct {
	features [][]float32
	y        []int // labels remapped onto 0..classes−1
	classes  int
	n, d     int
	spec     margin.Spec
	loss     margin.Loss
	batch    int        // samples per step
	steps    int        // steps per epoch
	pk       *pkSampler // the pair losses' P×K batches; nil: shuffled batches
	rng      *rand.Rand // every random draw of training, in order
}

// prepare checks the features, labels and config (filling its defaults),
// builds the loss and plans the batches.
func prepare(features [][]float32, labels []int, cfg *Config) (*trainingSet, error) {
	if len(features) == 0 {
		return nil, fmt.Errorf("no features")
	}
	if len(labels) != len(features) {
		return nil, fmt.Errorf("%d labels for %d features", len(labels), len(features))
	}
	d := len(features[0])
	if d == 0 {
		return nil, fmt.Errorf("empty features")
	}
	for i, f := range features {
		if len(f) != d {
			return nil, fmt.Errorf("feature %d has %d values, feature 0 has %d", i, len(f), d)
		}
		for _, v := range f {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("feature %d is not finite", i)
			}
		}
	}
	spec, ok := margin.Lookup(cfg.Loss)
	if !ok {
		return nil, fmt.Errorf("unknown loss %q (want one of %v)", cfg.Loss, margin.Names())
	}
	cfg.fill(d)
	if err := cfg.validate(spec, d); err != nil {
		return nil, err
	}
	loss, err := margin.New(cfg.Loss, cfg.LossParams)
	if err != nil {
		return nil, err
	}
	y, classes := remap(labels)
	if classes < 2 {
		return nil, fmt.Errorf("%d identities; need at least 2", classes)
	}
	ds := &trainingSet{features: features, y: y, classes: classes, n: len(features), d: d, spec: spec, loss: loss,
		batch: min(cfg.BatchSize, len(features))}
	if spec.Kind == margin.Pair {
		if ds.pk, err = newPKSampler(y, classes, cfg.BatchSize, cfg.PerIdentity); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Loss, err)
		}
		ds.batch = ds.pk.p * ds.pk.k
	}
	if cfg.BatchNorm && ds.batch < 2 {
		return nil, fmt.Errorf("BatchNorm needs batches of at least 2 samples")
	}
	ds.steps = max(ds.n/ds.batch, 1)
	ds.rng = rand.New(rand.NewPCG(uint64(cfg.Seed), 0x9e3779b97f4a7c15))
	return ds, nil
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

// model is the parameters and the graph that trains them: the projection P
// (d′×(d+1), last column the bias), BatchNorm's γ and β, the class weights
// or proxies W, and the loss on a batch x (batch×(d+1), last column 1).
type model struct {
	proj, gamma, beta []float32
	xbuf              []float32 // x's values: the batch's features
	lab               *margin.Labels
	cost              *gorgonia.Node
	learn             gorgonia.Nodes
	vm                gorgonia.VM
	opt               *adamW
}

// newModel sets the parameters' starting values (initParams) and builds the
// graph of the loss and its gradients (buildGraph).
func newModel(ds *trainingSet, cfg *Config) (*model, error) {
	m := &model{}
	w, err := m.initParams(ds, cfg)
	if err != nil {
		return nil, err
	}
	if err := m.buildGraph(ds, cfg, w); err != nil {
		return nil, err
	}
	return m, nil
}

// initParams starts P as the identity or the principal axes, γ = 1 and
// β = 0, and returns W's starting rows: each class's mean embedding,
// normalised to the loss's WeightNorm (K rows per class for SoftTriple, a
// little noise keeping them apart; none for the pair losses). A loss that
// starts from the class means (Center loss's centres) gets them.
func (m *model) initParams(ds *trainingSet, cfg *Config) ([]float32, error) {
	dOut := cfg.OutDim
	m.proj = initProjection(ds.features, dOut)
	if cfg.BatchNorm {
		m.gamma, m.beta = make([]float32, dOut), make([]float32, dOut)
		for j := range m.gamma {
			m.gamma[j] = 1
		}
	}
	emb := embedAll(ds.features, m.proj, dOut, m.gamma, m.beta)
	means := classMeans(emb, ds.y, ds.classes, dOut)
	if ci, ok := ds.loss.(margin.ClassInitializer); ok {
		if err := ci.InitClasses(means); err != nil {
			return nil, err
		}
	}
	perClass := margin.WeightRows(ds.loss, 1)
	w := make([]float32, ds.classes*perClass*dOut)
	for c, mc := range means {
		if perClass == 0 {
			break
		}
		norm := 0.0
		for _, v := range mc {
			norm += v * v
		}
		k := ds.spec.WeightNorm / math.Sqrt(max(norm, 1e-24))
		for t := 0; t < perClass; t++ {
			row := w[(c*perClass+t)*dOut : (c*perClass+t+1)*dOut]
			for j, v := range mc {
				row[j] = float32(v * k)
			}
			if perClass > 1 {
				// SoftTriple's centres of one class start apart (noise of
				// norm about 0.1): identical centres would get identical
				// gradients and never separate.
				sd := 0.1 / math.Sqrt(float64(dOut))
				for j := range row {
					row[j] += float32(sd * ds.rng.NormFloat64())
				}
			}
		}
	}
	return w, nil
}

// buildGraph builds z = [x 1]·Pᵀ (then BatchNorm), the loss on z and W, its
// gradients with respect to every parameter, the tape machine that runs
// them and the optimiser over them (decay on P and W, W's learning rate
// scaled by ProxyLRScale).
func (m *model) buildGraph(ds *trainingSet, cfg *Config, w []float32) error {
	d, dOut, batch := ds.d, cfg.OutDim, ds.batch
	g := gorgonia.NewGraph()
	m.xbuf = make([]float32, batch*(d+1))
	matrix := func(name string, rows, cols int, back []float32) *gorgonia.Node {
		return gorgonia.NewMatrix(g, tensor.Float32, gorgonia.WithShape(rows, cols), gorgonia.WithName(name),
			gorgonia.WithValue(tensor.New(tensor.WithShape(rows, cols), tensor.WithBacking(back))))
	}
	vector := func(name string, back []float32) *gorgonia.Node {
		return gorgonia.NewVector(g, tensor.Float32, gorgonia.WithShape(len(back)), gorgonia.WithName(name),
			gorgonia.WithValue(tensor.New(tensor.WithShape(len(back)), tensor.WithBacking(back))))
	}
	x := matrix("x", batch, d+1, m.xbuf)
	pN := matrix("proj", dOut, d+1, m.proj)
	m.learn = gorgonia.Nodes{pN}
	decay := []bool{true}
	lrScale := []float64{1}
	var wN *gorgonia.Node
	if len(w) > 0 {
		wN = matrix("w", len(w)/dOut, dOut, w)
		m.learn, decay, lrScale = append(m.learn, wN), append(decay, true), append(lrScale, cfg.ProxyLRScale)
	}
	z, err := margin.MatMulT(x, pN, true)
	if err != nil {
		return err
	}
	if cfg.BatchNorm {
		gN, bN := vector("bn_gamma", m.gamma), vector("bn_beta", m.beta)
		if z, err = batchNorm(z, gN, bN); err != nil {
			return err
		}
		m.learn = append(m.learn, gN, bN)
		decay = append(decay, false, false)
		lrScale = append(lrScale, 1, 1)
	}
	m.lab = margin.NewLabels(ds.classes)
	if m.cost, err = ds.loss.Build(z, wN, m.lab); err != nil {
		return err
	}
	if _, err := gorgonia.Grad(m.cost, m.learn...); err != nil {
		return fmt.Errorf("gradient: %w", err)
	}
	m.vm = gorgonia.NewTapeMachine(g, gorgonia.BindDualValues(m.learn...))
	m.opt = newAdamW(m.learn, decay, lrScale, cfg.WeightDecay)
	return nil
}

func (m *model) close() {
	if m.vm != nil {
		m.vm.Close()
	}
}

// epochs runs cfg.Epochs passes of ds.steps steps each and returns each
// epoch's statistics and the time the steps took.
func (m *model) epochs(ds *trainingSet, cfg *Config, start time.Time) ([]EpochStats, time.Duration, error) {
	order := make([]int, ds.n)
	for i := range order {
		order[i] = i
	}
	by := make([]int, ds.batch)
	stepper, _ := ds.loss.(margin.Stepper)
	sphere, _ := ds.loss.(*margin.SphereFace)
	total := cfg.Epochs * ds.steps
	var hist []EpochStats
	iter := 0
	loopStart := time.Now()
	for epoch := 1; epoch <= cfg.Epochs; epoch++ {
		if ds.pk == nil {
			ds.rng.Shuffle(ds.n, func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		var sumLoss float64
		var correct, seen int
		for s := 0; s < ds.steps; s++ {
			idx := order[s*ds.batch:]
			if ds.pk != nil {
				idx = ds.pk.draw(ds.rng)
			}
			lr := cfg.LR * (0.01 + 0.99*0.5*(1+math.Cos(math.Pi*float64(iter)/float64(total))))
			loss, err := m.step(ds, idx, by, stepper, iter, lr)
			if err != nil {
				return nil, 0, fmt.Errorf("epoch %d step %d: %w", epoch, s+1, err)
			}
			iter++
			sumLoss += loss
			correct += m.lab.Correct()
			seen += ds.batch
			if cfg.Progress != nil {
				lambda := 0.0
				if sphere != nil {
					lambda = sphere.Lambda()
				}
				cfg.Progress(Progress{
					Epoch: epoch, Epochs: cfg.Epochs, Step: s + 1, StepsPerEpoch: ds.steps,
					Loss: sumLoss / float64(s+1), Accuracy: float64(correct) / float64(seen),
					SamplesPerSec: float64(iter*ds.batch) / time.Since(loopStart).Seconds(), LR: lr, Lambda: lambda,
					Elapsed:   time.Since(start),
					EpochDone: s == ds.steps-1, TrainDone: s == ds.steps-1 && epoch == cfg.Epochs,
				})
			}
		}
		hist = append(hist, EpochStats{Epoch: epoch, Loss: sumLoss / float64(ds.steps), Accuracy: float64(correct) / float64(seen)})
	}
	return hist, time.Since(loopStart), nil
}

// step runs one optimiser step on the samples idx[:batch] at learning rate
// lr and returns the batch's loss.
func (m *model) step(ds *trainingSet, idx, by []int, stepper margin.Stepper, iter int, lr float64) (float64, error) {
	d := ds.d
	for k := range by {
		i := idx[k]
		row := m.xbuf[k*(d+1) : (k+1)*(d+1)]
		copy(row, ds.features[i])
		row[d] = 1
		by[k] = ds.y[i]
	}
	if err := m.lab.Set(by); err != nil {
		return 0, err
	}
	if stepper != nil {
		if err := stepper.BeforeStep(iter); err != nil {
			return 0, err
		}
	}
	if err := m.vm.RunAll(); err != nil {
		return 0, fmt.Errorf("iteration %d: %w", iter, err)
	}
	loss := float64(m.cost.Value().Data().(float32))
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return 0, fmt.Errorf("loss diverged (%v); lower the learning rate", loss)
	}
	if err := m.opt.step(lr); err != nil {
		return 0, err
	}
	if stepper != nil {
		if err := stepper.AfterStep(); err != nil {
			return 0, err
		}
	}
	m.vm.Reset()
	return loss, nil
}

// summarise fills the report from the run: what was trained on, with what,
// and how the loss and accuracy ended.
func (m *model) summarise(ds *trainingSet, cfg *Config, hist []EpochStats, loopTime time.Duration) Report {
	rep := Report{Loss: cfg.Loss, Params: cfg.record(ds.spec.Kind, ds.loss), Identities: ds.classes, Samples: ds.n,
		InDim: ds.d, OutDim: cfg.OutDim, Epochs: cfg.Epochs, Steps: cfg.Epochs * ds.steps, History: hist, GEMM: margin.GEMMBackend()}
	if ds.pk != nil {
		// Only identities with two or more photos are drawn.
		rep.Identities, rep.Samples = len(ds.pk.ids), 0
		for _, id := range ds.pk.ids {
			rep.Samples += len(ds.pk.photos[id])
		}
	}
	last := hist[len(hist)-1]
	rep.FinalLoss, rep.FinalAccuracy = last.Loss, last.Accuracy
	rep.SamplesPerSec = float64(rep.Steps*ds.batch) / loopTime.Seconds()
	return rep
}

// writeHead folds the trained projection (and BatchNorm) into the head,
// with the training record.
func (m *model) writeHead(ds *trainingSet, cfg *Config, rep Report) (*facehead.Head, error) {
	return fold(ds.features, m.proj, cfg.OutDim, m.gamma, m.beta, facehead.HeadMeta{
		BackboneSHA256: cfg.BackboneSHA256, Loss: cfg.Loss, Params: rep.Params, BatchNorm: cfg.BatchNorm,
		Identities: rep.Identities, Samples: rep.Samples, FinalLoss: rep.FinalLoss, FinalAccuracy: rep.FinalAccuracy,
	})
}
