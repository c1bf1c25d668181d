package server

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDocsBrowser opens /docs in a real headless chromium: the page shows
// every operation, its script runs under the page's strict CSP (the
// filter hides what does not match and the navigation follows), and with
// FACEVER_SCREENSHOTS=1 it saves docs/web-docs.png for the README.
func TestDocsBrowser(t *testing.T) {
	bin := chromiumPath(t)
	doc := loadOpenAPI(t)
	ops := 0
	for _, p := range doc.Paths.InMatchingOrder() {
		ops += len(doc.Paths.Value(p).Operations())
	}
	f, _ := newFakeFixture(t, &fakeRecognizer{}, nil)
	br := startBrowser(t, bin, 1280, 900, 2*time.Minute, false)
	ctx := br.ctx
	if err := chromedp.Do(ctx, chromedp.Navigate(f.http.URL+"/docs"), chromedp.WaitVisible(chromedp.ID("filter"))); err != nil {
		t.Fatalf("opening /docs: %v", err)
	}
	count := func(sel string) int {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+"`"+sel+"`"+`).length`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	title, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.title`))
	if err != nil {
		t.Fatal(err)
	}
	shown := count("article.op:not([hidden])")
	// Every path in the navigation column fits its width (long paths wrap
	// between segments): none is cut off at the column's edge.
	cut, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(() => {
		const nav = document.querySelector("nav"), right = nav.getBoundingClientRect().left + nav.clientWidth;
		return [...nav.querySelectorAll("li li code")].filter(c => c.getBoundingClientRect().right > right + 0.5).map(c => c.textContent);
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cut) > 0 {
		t.Errorf("/docs: %d paths run past the navigation column's edge: %q", len(cut), cut)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("filter"), "keys")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelectorAll("article.op:not([hidden])").length < `+strconv.Itoa(ops), chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Errorf("the filter hid nothing (does docs.js run under the CSP?): %v", err)
	}
	afterFilter, navShown := count("article.op:not([hidden])"), count("nav li li:not([hidden])")
	for _, m := range br.jsErrors() {
		t.Errorf("/docs: %s", m)
	}
	if title != "facever API reference" || shown != ops {
		t.Errorf("/docs: title %q, %d operations shown, want %d", title, shown, ops)
	}
	// "keys" is in the three key operations and wherever keys are named
	// (every endpoint that needs one says so).
	if afterFilter == 0 || afterFilter >= ops || navShown != afterFilter {
		t.Errorf("filter \"keys\": %d of %d operations shown, %d navigation links", afterFilter, ops, navShown)
	}
	if os.Getenv(EnvScreenshots) == "1" {
		if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`(() => { const f = document.getElementById("filter"); f.value = ""; f.dispatchEvent(new Event("input")); document.getElementById("op-verify").scrollIntoView(); return true })()`)(ctx, tg)
			return err
		})); err != nil {
			t.Fatal(err)
		}
		shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "web-docs.png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
