package server

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath finds Debian's chromium; without it the test is skipped,
// or fails under FACEVER_REQUIRE_BROWSER=1 (make test and CI).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv(EnvRequireBrowser) == "1" {
		t.Fatalf("chromium is not installed and %s=1: run scripts/setup.sh (it installs Debian's chromium)", EnvRequireBrowser)
	}
	t.Skipf("chromium is not installed (apt-get install chromium, or scripts/setup.sh); set %s=1 to make this a failure", EnvRequireBrowser)
	return ""
}

// browser is a headless chromium started for one test, with the page's
// JavaScript errors collected as they come.
type browser struct {
	// ctx drives the browser; it ends at the timeout given to startBrowser.
	ctx  context.Context
	mu   sync.Mutex
	errs []string
}

// startBrowser starts the chromium at bin with a window of w×h pixels and
// a fresh profile, and stops it when the test ends. Console errors and
// exceptions are collected (see jsErrors); with ignoreNetwork, those the
// browser logs for failed requests are not.
func startBrowser(t *testing.T, bin string, w, h int, timeout time.Duration, ignoreNetwork bool) *browser {
	t.Helper()
	opts := append([]chromedp.ExecAllocatorOption{},
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // root in a container
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(w, h),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelA)
	bctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(cancelB)
	// The first call starts the browser, on a context without a deadline.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	ctx, cancelT := context.WithTimeout(bctx, timeout)
	t.Cleanup(cancelT)
	b := &browser{ctx: ctx}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if (m.Type == chromedp.ConsoleError || m.IsException()) && !(ignoreNetwork && m.Source == "network") {
				b.mu.Lock()
				b.errs = append(b.errs, m.String())
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// jsErrors returns the JavaScript errors seen so far.
func (b *browser) jsErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errs...)
}
