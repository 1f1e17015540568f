/* The Open MPI baseline of the `collectives` suite: MPI_Alltoall and MPI_Allreduce of float32
 * buffers, timed like the mesh: a barrier, then one collective, per repeat; each rank keeps its own
 * median and rank 0 prints the largest median of all ranks, one JSON line per size. Before the timed
 * repeats, untimed calls for the warm-up budget (seconds, default 0.25; at most 20,000 calls), counted
 * from rank 0's estimate of one call, as the mesh's device program warms up; --max-warmup=CALLS
 * changes that cap.
 * usage: mpirun -np P mpi_alltoall <alltoall|allreduce> [--warmup=SECONDS] [--max-warmup=CALLS]
 *        <bytes per peer (all-to-all) or of the buffer (all-reduce)>... */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static int repeats_for(long bytes) {
  long r = (64L << 20) / (bytes > 0 ? bytes : 1);
  if (r < 7) r = 7;
  if (r > 200) r = 200;
  return (int)r;
}

static void collective(int alltoall, const float* send, float* recv, long n) {
  if (alltoall)
    MPI_Alltoall(send, (int)n, MPI_FLOAT, recv, (int)n, MPI_FLOAT, MPI_COMM_WORLD);
  else
    MPI_Allreduce(send, recv, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (argc < 3) {
    if (rank == 0) fprintf(stderr, "usage: mpi_alltoall <alltoall|allreduce> bytes...\n");
    MPI_Finalize();
    return 2;
  }
  const int alltoall = strcmp(argv[1], "alltoall") == 0;
  int first_size = 2;
  double budget = 0.25, max_warmup = 20000;
  for (; first_size < argc && strncmp(argv[first_size], "--", 2) == 0; ++first_size) {
    if (strncmp(argv[first_size], "--warmup=", 9) == 0) budget = atof(argv[first_size] + 9);
    else if (strncmp(argv[first_size], "--max-warmup=", 13) == 0) max_warmup = atof(argv[first_size] + 13);
    else {
      if (rank == 0) fprintf(stderr, "mpi_alltoall: unknown option %s\n", argv[first_size]);
      MPI_Finalize();
      return 2;
    }
  }
  for (int a = first_size; a < argc; ++a) {
    const long bytes = atol(argv[a]);
    const long n = bytes / 4; /* floats per peer (all-to-all) or in the buffer (all-reduce) */
    const long total = alltoall ? n * size : n;
    float* send = malloc((size_t)total * 4);
    float* recv = malloc((size_t)total * 4);
    for (long i = 0; i < total; ++i) send[i] = (float)(rank + 1) * 0.25f + (float)(i % 1000) * 1e-3f;
    memset(recv, 0, (size_t)total * 4);
    const int repeats = repeats_for(bytes), warmup = 3;
    double* times = malloc(sizeof(double) * (size_t)repeats);
    for (int it = 0; it < warmup; ++it) collective(alltoall, send, recv, n);
    /* The warm-up budget in untimed calls, twice when the call got at least twice as fast (as the
     * mesh's device program does: every rank makes the same calls, rank 0's estimates decide). */
    double first = 0;
    for (int stage = 0; stage < 2; ++stage) {
      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = MPI_Wtime();
      collective(alltoall, send, recv, n);
      double estimate = MPI_Wtime() - t0;
      if (estimate < 1e-9) estimate = 1e-9;
      MPI_Bcast(&estimate, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
      if (stage == 1 && !(estimate < first / 2)) break;
      if (stage == 0) first = estimate;
      double calls = budget / estimate;
      if (calls > max_warmup) calls = max_warmup;
      for (long i = 0; i < (long)calls; ++i) collective(alltoall, send, recv, n);
    }
    for (int it = 0; it < repeats; ++it) {
      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = MPI_Wtime();
      collective(alltoall, send, recv, n);
      times[it] = MPI_Wtime() - t0;
    }
    qsort(times, (size_t)repeats, sizeof(double), cmp_double);
    double median = times[repeats / 2], worst = 0;
    MPI_Reduce(&median, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0)
      printf("{\"op\":\"%s\",\"ranks\":%d,\"bytes\":%ld,\"seconds\":%.9g,\"repeats\":%d}\n", argv[1], size, bytes, worst, repeats);
    fflush(stdout);
    free(times);
    free(send);
    free(recv);
  }
  MPI_Finalize();
  return 0;
}
