# Sourced by the GPU scripts: listrank from this checkout, its missing wheels, the data and the
# bundled encoder on a bare GPU machine (benchmarks/gpu/README.md says what travels).
#   source benchmarks/gpu/env.sh [random|exact]
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
SITE=/tmp/listrank-site
STASH=/root/listrank-gpu  # outside the checkout: survives from one call to the next while the machine stays
mkdir -p "$SITE" "$STASH" /tmp/listrank-bin
if [ -d .whl ] && [ ! -f "$SITE/.wheels-done" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    && touch "$SITE/.wheels-done"
fi
export PYTHONPATH="$SITE:$PWD"
# the `listrank` command, without installing the checkout
printf '#!/bin/sh\nexec python3 -m listrank "$@"\n' > /tmp/listrank-bin/listrank
chmod +x /tmp/listrank-bin/listrank
export PATH="/tmp/listrank-bin:$PATH" LISTRANK=listrank PYTHON=python3
# the data: the shared datasets this session needs, carried as one archive
export LISTRANK_DATA=/tmp/listrank-data
if [ -f .gpu/data.tar.xz ] && [ ! -f "$LISTRANK_DATA/.done" ]; then
  mkdir -p "$LISTRANK_DATA" && tar xJf .gpu/data.tar.xz -C "$LISTRANK_DATA" && touch "$LISTRANK_DATA/.done"
fi
# the encoder: the low half of its weights is left in $STASH by the first call
[ -f .gpu/model/lo/lo.safetensors ] && cp .gpu/model/lo/lo.safetensors "$STASH/"
case "${1:-exact}" in
  random) python3 benchmarks/gpu/model_halves.py random .gpu/model /tmp/listrank-model --package "$SITE" 2>/dev/null ;;
  exact) python3 benchmarks/gpu/model_halves.py join .gpu/model /tmp/listrank-model --lo "$STASH/lo.safetensors" \
           --allow-hi-only --package "$SITE" ;;
esac
