#!/usr/bin/env bash
# fetch-dlib.sh obtains dlib's face-recognition ResNet
# (dlib_face_recognition_resnet_model_v1.dat, CC0) the ordinary way: from
# Debian's source package dlib 19.24+dfsg-1, whose models tarball
# dlib_19.24+dfsg.orig-dlib-models.tar.bz2 ships it. It is idempotent: when
# build/dlib/dlib_face_recognition_resnet_model_v1.dat is present with the
# recorded sha256 it does nothing.
#
# Steps: enable deb-src for Debian bookworm (a sources file under
# /etc/apt/sources.list.d/, only when no deb-src entry exists), apt-get update,
# `apt-get source --download-only dlib=19.24+dfsg-1` in build/dlib (about
# 209 MB), extract the .dat from the models tarball, check its sha256.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=19.24+dfsg-1
MODELS_TARBALL=dlib_19.24+dfsg.orig-dlib-models.tar.bz2
FILE=dlib_face_recognition_resnet_model_v1.dat
SHA256=55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30
DIR=build/dlib

if [ -f "$DIR/$FILE" ] && echo "$SHA256  $DIR/$FILE" | sha256sum --quiet -c - >/dev/null 2>&1; then
	echo "fetch-dlib: $DIR/$FILE present"
	exit 0
fi

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
mkdir -p "$DIR"

if [ ! -f "$DIR/$MODELS_TARBALL" ]; then
	if ! grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		echo "fetch-dlib: enabling deb-src for Debian bookworm"
		$SUDO tee /etc/apt/sources.list.d/facever-debian-src.sources >/dev/null <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	fi
	echo "fetch-dlib: apt-get update"
	$SUDO apt-get update -qq
	echo "fetch-dlib: downloading the source package dlib=$VERSION (about 209 MB)"
	(cd "$DIR" && apt-get source --download-only -qq "dlib=$VERSION")
fi

[ -f "$DIR/$MODELS_TARBALL" ] || {
	echo "fetch-dlib: $DIR/$MODELS_TARBALL missing after apt-get source" >&2
	exit 1
}
tar -xjf "$DIR/$MODELS_TARBALL" -O --wildcards --no-anchored "$FILE" >"$DIR/$FILE.tmp" || {
	rm -f "$DIR/$FILE.tmp"
	echo "fetch-dlib: could not extract $FILE from $DIR/$MODELS_TARBALL" >&2
	exit 1
}
mv "$DIR/$FILE.tmp" "$DIR/$FILE"
echo "$SHA256  $DIR/$FILE" | sha256sum -c - || {
	echo "fetch-dlib: $DIR/$FILE does not have the expected sha256 $SHA256" >&2
	exit 1
}
