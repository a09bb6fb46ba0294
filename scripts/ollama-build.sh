#!/usr/bin/env bash
# Builds the real Ollama server (CPU-only, cgo on) from the pinned Go module
# and caches the binary outside the checkout, keyed by version. Tests that
# need a real Ollama (internal/ollamarig) look for the binary at the cache
# path printed on the last line of this script's output.
#
# Usage: scripts/ollama-build.sh            # build if needed, print the path
#        SOVRA_CACHE_DIR=/some/dir scripts/ollama-build.sh
#        OLLAMA_VERSION=v0.17.4 scripts/ollama-build.sh
#
# The first build compiles the vendored ggml/llama.cpp sources and takes
# roughly half an hour on two cores; later runs return at once.
set -euo pipefail

OLLAMA_VERSION="${OLLAMA_VERSION:-v0.17.4}"
CACHE_ROOT="${SOVRA_CACHE_DIR:-${HOME}/.cache/sovra}"
DEST_DIR="${CACHE_ROOT}/ollama/${OLLAMA_VERSION}"
BIN="${DEST_DIR}/ollama"

log() { echo "ollama-build: $*" >&2; }

binary_works() {
	[ -x "$1" ] && "$1" --version >/dev/null 2>&1
}

if binary_works "${BIN}"; then
	log "cached binary ${BIN} works; nothing to do"
	echo "${BIN}"
	exit 0
fi

command -v go >/dev/null 2>&1 || { log "go is not on PATH"; exit 1; }

# System packages the cgo part of the build needs. The Go module zip drops the
# llama.cpp vendor/ directories, so the headers come from Debian instead.
need_pkgs=()
dpkg -s nlohmann-json3-dev >/dev/null 2>&1 || need_pkgs+=(nlohmann-json3-dev)
dpkg -s libstb-dev >/dev/null 2>&1 || need_pkgs+=(libstb-dev)
command -v g++ >/dev/null 2>&1 || need_pkgs+=(build-essential g++)
command -v gcc >/dev/null 2>&1 || need_pkgs+=(gcc)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
	SUDO=""
	if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
	log "installing ${need_pkgs[*]}"
	${SUDO} apt-get update -q >&2
	DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >&2
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sovra-ollama-build.XXXXXX")"
trap 'rm -rf "${WORK}"' EXIT

# Stand-in for miniaudio: Ollama only reaches it when decoding audio input for
# multimodal models. Every decoder entry point reports failure, so audio input
# is rejected and everything else works. It lives at a fixed path next to the
# cached binary because the include path is part of the Go build cache key:
# a fixed path lets a rebuild reuse the compiled C/C++ objects.
INCLUDE_DIR="${DEST_DIR}/include"
mkdir -p "${INCLUDE_DIR}/miniaudio"
cat >"${WORK}/miniaudio.h" <<'HDR'
/* Minimal miniaudio stand-in used by sovra's test build of Ollama. */
#ifndef SOVRA_MINIAUDIO_STUB_H
#define SOVRA_MINIAUDIO_STUB_H

#include <stddef.h>
#include <stdint.h>

typedef int ma_result;
typedef uint32_t ma_uint32;
typedef uint64_t ma_uint64;

#define MA_SUCCESS 0
#define MA_ERROR (-1)

typedef enum { ma_format_unknown = 0, ma_format_u8, ma_format_s16, ma_format_s24, ma_format_s32, ma_format_f32 } ma_format;
typedef enum { ma_encoding_format_unknown = 0, ma_encoding_format_wav } ma_encoding_format;

typedef struct {
	ma_format format;
	ma_uint32 channels;
	ma_uint32 sampleRate;
} ma_decoder_config;

typedef struct {
	int unused;
} ma_decoder;

static inline ma_decoder_config ma_decoder_config_init(ma_format format, ma_uint32 channels, ma_uint32 sampleRate) {
	ma_decoder_config c;
	c.format = format;
	c.channels = channels;
	c.sampleRate = sampleRate;
	return c;
}

static inline ma_result ma_decoder_init_memory(const void *data, size_t size, const ma_decoder_config *config, ma_decoder *decoder) {
	(void)data; (void)size; (void)config; (void)decoder;
	return MA_ERROR;
}

static inline ma_result ma_decoder_get_length_in_pcm_frames(ma_decoder *decoder, ma_uint64 *length) {
	(void)decoder;
	if (length) *length = 0;
	return MA_ERROR;
}

static inline ma_result ma_decoder_read_pcm_frames(ma_decoder *decoder, void *out, ma_uint64 count, ma_uint64 *read) {
	(void)decoder; (void)out; (void)count;
	if (read) *read = 0;
	return MA_ERROR;
}

static inline ma_result ma_decoder_uninit(ma_decoder *decoder) {
	(void)decoder;
	return MA_SUCCESS;
}

#endif
HDR
if ! cmp -s "${WORK}/miniaudio.h" "${INCLUDE_DIR}/miniaudio/miniaudio.h"; then
	mv -f "${WORK}/miniaudio.h" "${INCLUDE_DIR}/miniaudio/miniaudio.h"
fi

mkdir -p "${DEST_DIR}"

start=$(date +%s)
log "building github.com/ollama/ollama@${OLLAMA_VERSION} (CPU only, cgo on); this takes a while the first time"

# go install pkg@version builds the module with its own go.mod, independent
# of the sovra module, and keeps the regular Go build cache warm for reruns.
# -w silences the many C/C++ warnings of the vendored sources.
export CGO_ENABLED=1
export CGO_CPPFLAGS="-I${INCLUDE_DIR} ${CGO_CPPFLAGS:-}"
export CGO_CFLAGS="${CGO_CFLAGS:--O2} -w"
export CGO_CXXFLAGS="${CGO_CXXFLAGS:--O2} -w"
ldflags="-X github.com/ollama/ollama/version.Version=${OLLAMA_VERSION#v} -X github.com/ollama/ollama/server.mode=release"
GOBIN="${WORK}/bin" go install -trimpath -ldflags="${ldflags}" "github.com/ollama/ollama@${OLLAMA_VERSION}" >&2

tmpbin="${DEST_DIR}/.ollama.tmp.$$"
cp "${WORK}/bin/ollama" "${tmpbin}"
chmod 0755 "${tmpbin}"
mv -f "${tmpbin}" "${BIN}"

if ! binary_works "${BIN}"; then
	log "built ${BIN} but '${BIN} --version' fails"
	exit 1
fi
log "built in $(( $(date +%s) - start ))s"
echo "${BIN}"
