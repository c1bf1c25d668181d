package main

// embedDoc is embed's --json document: the head is named only when there is
// one (no empty strings for "none" anywhere in facever's JSON; see schema/).
func embedDoc(model, head string, dim int, photos any) map[string]any {
	doc := map[string]any{"model": model, "dim": dim, "photos": photos}
	if head != "" {
		doc["head"] = head
	}
	return doc
}

// evalDoc is eval's --json document; roc_png is there only when a plot was
// written.
func evalDoc(ev any, withoutFace int, format any, roc string) map[string]any {
	doc := map[string]any{"evaluation": ev, "photos_without_face": withoutFace, "format": format}
	if roc != "" {
		doc["roc_png"] = roc
	}
	return doc
}
