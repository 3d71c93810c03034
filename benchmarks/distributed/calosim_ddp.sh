cd /work/bench_runs/calo
CL="-m colliderlab.cli.main"
PY=/tmp/venvprobe/bin/python
ARGS="train calosim --geometry atlas5 --particle gamma --showers 50000 --data-dir DATA --threads 1 --model vae --epochs 2 --batch-size 1024 --lr 3e-3 --per-layer --model-arg zero_mask=true --model-arg conditional_sigma=true --model-arg energy_model=spline_iaf --model-arg energy_hidden=[32,32] --model-arg decoder_rank=32 --model-arg hidden=[128,64] --model-arg sample_noise=0.85 --no-progress"
rm -rf /work/bench_runs/dask/ddp1b /work/bench_runs/dask/ddp2b
echo "== one process"
OMP_NUM_THREADS=1 $PY $CL $ARGS -o /work/bench_runs/dask/ddp1b | grep -E "train_s|seconds_per|processes"
echo "== torchrun, 2 processes"
OMP_NUM_THREADS=1 $PY -m torch.distributed.run --nproc_per_node 2 $CL $ARGS -o /work/bench_runs/dask/ddp2b | grep -E "train_s|seconds_per|processes|max_weight"
