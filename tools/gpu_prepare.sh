# Run HERE (not on the device) before a GPU call: the wheels the device image lacks, for its
# Python 3.12 (.whl/), and the connectome file (.devcache/connectome/), both git-ignored; pass
# them to the device tool as carry: [".whl", ".devcache"].
set -eu
rm -rf .whl && mkdir -p .whl .devcache/connectome
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
  -d .whl pydantic pydantic_core annotated_types typing_inspection netCDF4 cftime certifi
cp "${FLYVIS_STUDY_CACHE:-$HOME/.cache/flyvis_study}/connectome/fib25-fib19_v2.2.json" .devcache/connectome/ 2>/dev/null \
  || python3 -c "from flyvis_study.world.connectome_file import connectome_file_path; print(connectome_file_path())" >/dev/null \
  && cp "${FLYVIS_STUDY_CACHE:-$HOME/.cache/flyvis_study}/connectome/fib25-fib19_v2.2.json" .devcache/connectome/
du -sh .whl .devcache
