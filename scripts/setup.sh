#!/usr/bin/env bash
# setup.sh installs what facever needs on a fresh Debian 12 machine and is
# idempotent: a second run skips every step that is already done.
#   - Debian packages: OpenCV 4.6 (libopencv-dev, opencv-data), pkg-config,
#     ONNX's conformance cases (libonnx-testdata) for the engine tests, and
#     chromium for the web page's browser test.
#   - The three models from the npm package faceplugin-face-recognition-js@0.0.1,
#     checked against the sha256 sums in models/SHA256SUMS.
#   - Group photos for the detection tests from @vladmandic/face-api@1.7.15.
#   - Debian's postgresql (only its binaries are used: the tests run a
#     private cluster of their own, see internal/pgtest; no cluster is
#     created and no service started).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
pkg-config --exists opencv4 2>/dev/null || need_apt+=(libopencv-dev pkg-config)
[ -d /usr/share/opencv4/haarcascades ] || need_apt+=(opencv-data)
[ -d /usr/share/libonnx-testdata/data/node ] || need_apt+=(libonnx-testdata)
# Debian's chromium: the web page's end-to-end test drives it headless.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
	echo "setup: installing Debian packages: ${need_apt[*]}"
	SUDO=""
	[ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# PostgreSQL for the pgstore tests: the binaries under
# /usr/lib/postgresql/*/bin. The package would create and start a "main"
# cluster: tell postgresql-common not to create it, and invoke-rc.d not to
# start services, for the time of the install.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
	echo "setup: installing Debian's postgresql (binaries only, no service)"
	SUDO=""
	[ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO mkdir -p /etc/postgresql-common/createcluster.d
	echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/facever-no-main.conf >/dev/null
	policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		policy=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
		$SUDO chmod +x "$policy"
	fi
	$SUDO apt-get update -qq
	status=0
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null || status=$?
	[ -z "$policy" ] || $SUDO rm -f "$policy"
	[ "$status" = 0 ] || exit "$status"
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || {
		echo "setup: postgresql installed but no /usr/lib/postgresql/*/bin/initdb" >&2
		exit 1
	}
fi

mkdir -p build/npm
fetch() { # fetch PACKAGE@VERSION -> extracted into build/npm/NAME
	local spec=$1 dir=$2
	if [ ! -d "build/npm/$dir/package" ]; then
		echo "setup: fetching $spec"
		local tgz
		tgz=$(cd build/npm && npm pack --silent "$spec" | tail -1)
		mkdir -p "build/npm/$dir"
		tar -xzf "build/npm/$tgz" -C "build/npm/$dir"
	fi
}

if ! (cd models && sha256sum --quiet -c SHA256SUMS >/dev/null 2>&1); then
	fetch faceplugin-face-recognition-js@0.0.1 faceplugin
	for f in fr_feature.onnx fr_detect.onnx fr_landmark.onnx; do
		cp "build/npm/faceplugin/package/model/$f" "models/$f"
	done
	(cd models && sha256sum -c SHA256SUMS) || {
		echo "setup: model checksums do not match models/SHA256SUMS" >&2
		exit 1
	}
fi

mkdir -p testdata/external/groups
if ! (cd testdata/external/groups && sha256sum --quiet -c ../../groups.SHA256SUMS >/dev/null 2>&1); then
	fetch @vladmandic/face-api@1.7.15 faceapi
	cp build/npm/faceapi/package/demo/sample[1-6].jpg testdata/external/groups/
	(cd testdata/external/groups && sha256sum -c ../../groups.SHA256SUMS)
fi
# dlib's CC0 face-recognition ResNet, from Debian's dlib source package.
bash scripts/fetch-dlib.sh
echo "setup: done"
