package server

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/facever/facever/enroll"
)

// EnvRequireBrowser makes TestWebBrowser fail, not skip, without chromium
// (`make test` and CI set it: scripts/setup.sh installs chromium).
const EnvRequireBrowser = "FACEVER_REQUIRE_BROWSER"

// EnvScreenshots, set to 1, makes TestWebBrowser write each screen to
// docs/web-*.png (the README shows them).
const EnvScreenshots = "FACEVER_SCREENSHOTS"

// cropsShown is the page's condition that the person's screen shows n
// faces, each an enrolled crop decoded at 112×112 from an object URL.
func cropsShown(n int) string {
	return fmt.Sprintf(`(() => { const ims = [...document.querySelectorAll("#person-faces li img")]; return ims.length === %d && ims.every((i) => i.complete && i.naturalWidth === 112 && i.naturalHeight === 112 && i.src.startsWith("blob:")); })()`, n)
}

// jsList is a JavaScript array literal of strings.
func jsList(ss []string) string {
	b, _ := json.Marshal(ss)
	return string(b)
}

// axis is a unit vector of like's dimension: no one's face.
func axis(like []float32) []float32 {
	v := make([]float32, len(like))
	v[0] = 1
	return v
}

// TestWebBrowser drives the web page in a real headless chromium against a
// real server (the real models, a fresh gallery, a real API key) on
// loopback: sign in, verify two photos of John Simm, enroll two people,
// identify one of them from a photo not enrolled, rename him, delete one
// of his photos, delete him, page through 151 people with the API's
// cursors and search them, create an API key and revoke it, and check
// what the page shows (and the gallery holds) at each step. Every wait is for a condition
// in the page, with generous time limits for a loaded machine.
func TestWebBrowser(t *testing.T) {
	bin := chromiumPath(t)
	f := newFixture(t, nil)
	photo := func(person string, i int) string {
		files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "johns", person, "*.jpg"))
		if len(files) <= i {
			t.Fatalf("%s: %d photos", person, len(files))
		}
		abs, err := filepath.Abs(files[i])
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}

	// Errors in the page (an exception, console.error, a CSP refusal in the
	// browser's log) fail the test; failed requests (the wrong key's 401)
	// are the page's business.
	br := startBrowser(t, bin, 1100, 900, 5*time.Minute, true)
	ctx := br.ctx
	// The page's own record of CSP violations.
	const cspProbe = `document.addEventListener("securitypolicyviolation", (e) => { window.__csp = (window.__csp || []).concat(e.violatedDirective + " " + e.blockedURI); }); true`

	run := func(step string, acts ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, acts...); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	// until waits for a JavaScript condition to hold (2 minutes at most:
	// the models run on 2 loaded cores).
	until := func(step, cond string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(2*time.Minute), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
			state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("[role=alert],[role=status]")].map(e => e.id + ": " + e.textContent).join(" | ")`))
			t.Fatalf("%s: waiting for %s: %v (page says: %s)", step, cond, err, state)
		}
	}
	textOf := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return s
	}
	eval := func(expr string, opts ...chromedp.EvaluateOption) []string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](expr, opts...))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v
	}
	shot := func(name string) {
		t.Helper()
		if os.Getenv(EnvScreenshots) != "1" {
			return
		}
		buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		p := filepath.Join("..", "..", "docs", "web-"+name+".png")
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", p)
	}
	id := func(s string) chromedp.ID { return chromedp.ID(s) }
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }

	// Sign in: a wrong key is refused on the page, the real one accepted.
	run("open", chromedp.Navigate(f.http.URL+"/"), chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](cspProbe)(ctx, tg)
		return err
	}))
	run("wrong key", chromedp.SendKeys(id("key"), "fv_wrong"), chromedp.Click(css(`#signin-form button[type=submit]`)))
	until("wrong key", `document.getElementById("signin-error").textContent.includes("not accepted")`)
	shot("signin")
	eval(`document.getElementById("key").value = ""; []`)
	run("sign in", chromedp.SendKeys(id("key"), f.key), chromedp.Click(css(`#signin-form button[type=submit]`)))
	until("sign in", `!document.getElementById("verify").hidden && document.getElementById("signin").hidden`)
	until("model shown", `document.getElementById("model").textContent.startsWith("model ")`)

	// Verify two photos of John Simm: same person, both crops, the bar.
	run("verify", chromedp.SetUploadFiles(id("photo-a"), []string{photo("John_Simm", 0)}),
		chromedp.SetUploadFiles(id("photo-b"), []string{photo("John_Simm", 1)}),
		chromedp.Click(id("verify-go")))
	until("verify", `!document.getElementById("verify-result").hidden`)
	if d := textOf("#verify-decision"); d != "Same person" {
		t.Fatalf("decision %q", d)
	}
	var sim float64
	if n := textOf("#verify-numbers"); !strings.HasPrefix(n, "similarity ") {
		t.Fatalf("numbers %q", n)
	} else if _, err := fmt.Sscanf(n, "similarity %f", &sim); err != nil || sim < 0.3 || sim > 1 {
		t.Fatalf("numbers %q: similarity %v (%v)", n, sim, err)
	}
	until("crops", `["crop-a","crop-b"].every(id => { const i = document.getElementById(id); return i.complete && i.naturalWidth === 112 && i.naturalHeight === 112; })`)
	until("bar", `parseFloat(document.getElementById("verify-fill").style.width) > parseFloat(document.getElementById("verify-mark").style.left)`)
	shot("verify")
	// Two different people: the page says so.
	run("verify different", chromedp.SetUploadFiles(id("photo-b"), []string{photo("John_Salley", 0)}), chromedp.Click(id("verify-go")))
	until("verify different", `document.getElementById("verify-decision").textContent === "Different people" && !document.getElementById("verify-result").hidden`)

	// Gallery: enroll John Simm (3 photos) and John Salley (2).
	run("gallery", chromedp.Click(css(`#nav [data-screen=gallery]`)))
	until("gallery", `!document.getElementById("gallery").hidden`)
	until("empty gallery", `document.getElementById("people-caption").textContent === "nobody enrolled yet"`)
	enrollPerson := func(name, person string, n int) {
		t.Helper()
		var files []string
		for i := 0; i < n; i++ {
			files = append(files, photo(person, 2+i))
		}
		run("enroll "+name, chromedp.SendKeys(id("new-name"), name), chromedp.SetUploadFiles(id("new-photos"), files), chromedp.Click(id("new-go")))
		until("enroll "+name, fmt.Sprintf(`document.getElementById("gallery-status").textContent === "Enrolled %s: %d of %d photos enrolled" && document.getElementById("person-name").textContent === %q`, name, n, n, name))
	}
	enrollPerson("John Salley", "John_Salley", 2)
	enrollPerson("John Simm", "John_Simm", 3)
	until("listed", `[...document.querySelectorAll("#people tbody tr")].map(r => r.cells[0].textContent + "=" + r.cells[1].textContent).join(",") === "John Salley=2,John Simm=3"`)
	until("person's photos", `document.querySelectorAll("#person-faces li").length === 3`)
	// Each face is its enrolled crop: a decoded 112×112 image from an
	// object URL (fetched with the key), with its alt text, and its source
	// and face id as the caption.
	simm, err := f.gal.Templates(2)
	if err != nil || len(simm) != 3 {
		t.Fatalf("John Simm's templates: %v %v", simm, err)
	}
	until("crops shown", cropsShown(3))
	for i, c := range eval(`[...document.querySelectorAll("#person-faces li")].map(l => l.querySelector("img").alt + " | " + l.querySelector("figcaption").textContent + " | " + l.querySelector("button").getAttribute("aria-label"))`) {
		tm := simm[i]
		if want := fmt.Sprintf("enrolled face %d of John Simm, from %s | %sface %d | Delete photo %s (face %d)", tm.ID, tm.Source, tm.Source, tm.ID, tm.Source, tm.ID); c != want {
			t.Errorf("face %d shows %q, want %q", i, c, want)
		}
	}
	// Search by the start of a name (the API's prefix search).
	run("search", chromedp.SendKeys(id("search"), "John Si"), chromedp.Click(css(`#search-form button`)))
	until("search", `[...document.querySelectorAll("#people tbody tr")].map(r => r.cells[0].textContent).join(",") === "John Simm"`)
	shot("gallery")

	// Identify John Simm from a photo not enrolled: boxed, named, with
	// both people among the top matches, John Simm first.
	run("identify", chromedp.Click(css(`#nav [data-screen=identify]`)),
		chromedp.SetUploadFiles(id("photo-id"), []string{photo("John_Simm", 7)}), chromedp.Click(id("identify-go")))
	until("identify", `!document.getElementById("identify-result").hidden && document.querySelectorAll("#identify-stage .box").length >= 1`)
	if w := textOf("#identify-faces .who"); w != "Face 1: John Simm" {
		t.Fatalf("identified as %q", w)
	}
	top := eval(`[...document.querySelectorAll("#identify-faces > li:first-child ol li")].map(l => l.textContent)`)
	if len(top) != 2 || !strings.HasPrefix(top[0], "John Simm — ") || !strings.HasSuffix(top[0], "(match)") || !strings.HasPrefix(top[1], "John Salley — ") || strings.HasSuffix(top[1], "(match)") {
		t.Fatalf("top matches %q", top)
	}
	until("box placed", `(() => { const b = document.querySelector("#identify-stage .box"); return b && parseFloat(b.style.width) > 10 && parseFloat(b.style.height) > 10; })()`)
	shot("identify")

	// Delete John Simm (the page asks first).
	run("open person", chromedp.Click(css(`#nav [data-screen=gallery]`)))
	eval(`document.getElementById("search").value = ""; []`)
	run("clear the search", chromedp.Click(css(`#search-form button`)))
	until("list", `document.querySelectorAll("#people tbody tr").length === 2`)
	eval(`document.getElementById("person").hidden = true; []`) // shown again once opened
	run("open John Simm", chromedp.Click(chromedp.Search(`//table[@id="people"]//button[text()="John Simm"]`)))
	until("opened", `document.getElementById("person-name").textContent === "John Simm" && !document.getElementById("person").hidden`)
	// Rename him.
	eval(`document.getElementById("rename").value = ""; []`)
	run("rename", chromedp.SendKeys(id("rename"), "John Simm (actor)"), chromedp.Click(css(`#rename-form button`)))
	until("renamed", `document.getElementById("person-name").textContent === "John Simm (actor)" && [...document.querySelectorAll("#people tbody tr")].map(r => r.cells[0].textContent).join(",") === "John Salley,John Simm (actor)"`)
	if it, err := f.gal.Get(2); err != nil || it.Name != "John Simm (actor)" {
		t.Fatalf("gallery after the rename: %v %v", it, err)
	}
	// Delete one of his photos: the page and the gallery hold two.
	ts, err := f.gal.Templates(2)
	if err != nil || len(ts) != 3 {
		t.Fatalf("templates before: %v %v", ts, err)
	}
	until("crops shown again", cropsShown(3))
	before := eval(`[...document.querySelectorAll("#person-faces img")].map(i => i.src)`)
	run("delete a photo", chromedp.Click(css(`#person-faces li:first-child button`)))
	until("photo deleted", fmt.Sprintf(`document.getElementById("gallery-status").textContent === "Deleted photo %s (face %d) of John Simm (actor): 2 left" && document.querySelectorAll("#person-faces li").length === 2 && [...document.querySelectorAll("#people tbody tr")].map(r => r.cells[0].textContent + "=" + r.cells[1].textContent).join(",") === "John Salley=2,John Simm (actor)=2"`, ts[0].Source, ts[0].ID))
	if after, err := f.gal.Templates(2); err != nil || len(after) != 2 || after[0].ID != ts[1].ID {
		t.Fatalf("templates after deleting %d: %v %v", ts[0].ID, after, err)
	}
	until("crops after the delete", cropsShown(2)+fmt.Sprintf(` && !document.querySelector("#person-faces").textContent.includes("face %d")`, ts[0].ID))
	// The screen drawn anew revoked the object URLs of the one before.
	if got := eval(fmt.Sprintf(`(async () => { const load = (u) => new Promise((r) => { const i = new Image(); i.onload = () => r("live"); i.onerror = () => r("revoked"); i.src = u; }); return Promise.all(%s.map(load)); })()`, jsList(before)), chromedp.EvalAwaitPromise); strings.Join(got, ",") != "revoked,revoked,revoked" {
		t.Errorf("the object URLs of the crops before the delete: %q, want all revoked", got)
	}
	// A face with no crop kept (as imported) shows a placeholder that says
	// so, beside the crops of the others.
	noCrop, err := f.gal.AddTemplates(2, []enroll.Template{{Embedding: axis(ts[0].Embedding), Source: "imported"}})
	if err != nil {
		t.Fatal(err)
	}
	run("reload the list", chromedp.Click(css(`#search-form button`)))
	until("listed with 3", `[...document.querySelectorAll("#people tbody tr")].map(r => r.cells[0].textContent + "=" + r.cells[1].textContent).join(",") === "John Salley=2,John Simm (actor)=3"`)
	run("reopen John Simm", chromedp.Click(chromedp.Search(`//table[@id="people"]//button[text()="John Simm (actor)"]`)))
	until("placeholder", cropsShown(2)+fmt.Sprintf(` && document.querySelectorAll("#person-faces li").length === 3 && document.querySelector("#person-faces li:last-child .no-crop[role=img]").getAttribute("aria-label") === "no image of face %d: no image kept"`, noCrop[0].ID))
	shot("person")
	if _, err := f.gal.RemoveTemplate(2, noCrop[0].ID); err != nil {
		t.Fatal(err)
	}
	run("delete", chromedp.Click(id("person-delete")))
	until("asked", `!document.getElementById("person-confirm").hidden && document.getElementById("person-confirm-text").textContent === "Delete John Simm (actor) and all their photos?"`)
	run("confirm", chromedp.Click(id("person-delete-yes")))
	until("deleted", `document.getElementById("gallery-status").textContent === "Deleted John Simm (actor)" && document.getElementById("person").hidden && [...document.querySelectorAll("#people tbody tr")].map(r => r.cells[0].textContent).join(",") === "John Salley"`)
	if ids, _, err := f.gal.ListPage(0, 10); err != nil || len(ids) != 1 || ids[0].Name != "John Salley" {
		t.Fatalf("gallery after the delete: %v %v", ids, err)
	}

	// Paging: 150 more people (no photos) make two pages of 100 and 51,
	// walked with next_cursor: nobody repeated or skipped.
	for i := 1; i <= 150; i++ {
		if _, err := f.gal.AddIdentity(fmt.Sprintf("Person %03d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	names := `[...document.querySelectorAll("#people tbody tr")].map(r => r.cells[0].textContent)`
	run("first page", chromedp.Click(css(`#search-form button`)))
	until("first page", `document.querySelectorAll("#people tbody tr").length === 100 && document.getElementById("people-caption").textContent === "100 shown; more on the next page" && !document.getElementById("page-next").disabled && document.getElementById("page-first").disabled`)
	first := eval(names)
	run("next page", chromedp.Click(id("page-next")))
	until("next page", `document.querySelectorAll("#people tbody tr").length === 51 && document.getElementById("page-next").disabled && !document.getElementById("page-first").disabled`)
	second := eval(names)
	seen := map[string]bool{}
	for _, n := range append(first, second...) {
		if seen[n] {
			t.Fatalf("%q on both pages", n)
		}
		seen[n] = true
	}
	if !seen["John Salley"] || !seen["Person 001"] || !seen["Person 150"] || len(seen) != 151 {
		t.Fatalf("pages hold %d people: %q / %q", len(seen), first, second)
	}
	run("back to the first", chromedp.Click(id("page-first")))
	until("back to the first", `document.querySelectorAll("#people tbody tr").length === 100 && document.querySelector("#people tbody tr td").textContent === "John Salley"`)
	run("search page", chromedp.SendKeys(id("search"), "Person 1"), chromedp.Click(css(`#search-form button`)))
	until("search page", `document.querySelectorAll("#people tbody tr").length === 51 && document.getElementById("people-caption").textContent === "51 shown (names starting with \u201cPerson 1\u201d)" && document.getElementById("page-next").disabled`)
	if got := eval(names); got[0] != "Person 100" || got[50] != "Person 150" {
		t.Fatalf("search Person 1: %q", got)
	}

	// API keys (the test's key is an admin key): list, create a recognize
	// key (shown once), revoke it.
	run("keys", chromedp.Click(css(`#nav [data-screen=keys]`)))
	until("keys", `document.querySelectorAll("#keys-table tbody tr").length === 1`)
	run("new key", chromedp.SendKeys(id("key-name"), "kiosk"), chromedp.Click(css(`#key-form button[type=submit]`)))
	until("new key", `document.getElementById("key-new").textContent.startsWith("New key (shown once, copy it now): ") && document.querySelectorAll("#keys-table tbody tr").length === 2`)
	if rows := eval(`[...document.querySelectorAll("#keys-table tbody tr")].map(r => r.cells[0].textContent + "=" + r.cells[2].textContent)`); len(rows) != 2 || !strings.Contains(strings.Join(rows, ","), "kiosk=recognize") {
		t.Fatalf("keys %q", rows)
	}
	kiosk := strings.TrimPrefix(textOf("#key-new"), "New key (shown once, copy it now): ")
	// The new key works at once: past the key check (400 for an empty
	// verify, not 401).
	if code, _ := f.do(t, "POST", "/v1/verify", "application/json", []byte(`{}`), kiosk); code != 400 {
		t.Fatalf("the new key's verify: %d", code)
	}
	// Revoke it (the page asks first): gone from the page and the gallery,
	// refused on the next request.
	run("revoke", chromedp.Click(chromedp.Search(`//table[@id="keys-table"]//tr[td[1]="kiosk"]//button`)))
	until("asked to revoke", `!document.getElementById("key-confirm").hidden && document.getElementById("key-confirm-text").textContent.startsWith("Revoke key kiosk (")`)
	shot("keys")
	run("confirm revoke", chromedp.Click(id("key-revoke-yes")))
	until("revoked", `document.getElementById("key-new").textContent.startsWith("Revoked key kiosk (") && document.querySelectorAll("#keys-table tbody tr").length === 1 && document.getElementById("key-confirm").hidden`)
	if keys, err := f.gal.APIKeys(); err != nil || len(keys) != 1 || keys[0].Name != "test" {
		t.Fatalf("keys after the revoke: %v %v", keys, err)
	}
	if code, _ := f.do(t, "POST", "/v1/verify", "application/json", []byte(`{}`), kiosk); code != 401 {
		t.Fatalf("the revoked key's verify: %d, want 401", code)
	}

	// Sign out: the key is gone from the tab.
	run("sign out", chromedp.Click(id("signout")))
	until("signed out", `!document.getElementById("signin").hidden && document.getElementById("nav").hidden`)
	if stored := eval(`[String(sessionStorage.getItem("facever.key"))]`); stored[0] != "null" {
		t.Fatalf("key still stored: %q", stored)
	}
	csp := eval(`window.__csp || []`)
	if jsErrors := br.jsErrors(); len(csp) > 0 || len(jsErrors) > 0 {
		t.Fatalf("CSP violations %q, JavaScript errors %q", csp, jsErrors)
	}
}
