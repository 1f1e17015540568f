// The device mesh over MPI (SPEC §3): the same collectives, groups and wire as the shared-memory
// Communicator, carried by an existing MPI library for meshes that span machines. The library is
// loaded at run time (dlopen), so neither the build nor the prebuilt binary depends on it; Open MPI
// 4.x/5.x is supported (its ABI names the predefined handles by symbol).
//
// Results are bit-identical to the shared-memory mesh: the values crossing devices are rounded the
// same way on the bf16 wire (including a device's chunk to itself), and reductions sum the
// contributions in group order 0, 1, ..., P − 1 on the receiving device, never inside MPI.
// Every wait polls a non-blocking MPI request, so a collective is bounded by the timeout.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "collectives.h"

namespace st::mesh {

struct MpiLibrary;

class MpiCommunicator {
 public:
  // Loads the MPI library (`library` empty: the usual sonames of Open MPI), initialises MPI and
  // splits one communicator per axis. `launcher_pid` (0: none) is a process on this host whose
  // death aborts every wait. Throws std::runtime_error when MPI cannot be loaded or started, or
  // when the world's size is not the product of the axis sizes.
  MpiCommunicator(const std::vector<std::string>& axis_names, const std::vector<int>& axis_sizes, int64_t timeout_ms,
                  const std::string& library, int launcher_pid);
  ~MpiCommunicator();
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int n_kinds() const { return static_cast<int>(groups_.size()); }
  const Group& group(int kind) const { return groups_.at(static_cast<size_t>(kind)); }
  const Stats& stats() const { return stats_; }
  void reset_stats() { stats_ = Stats{}; }
  void set_timeout_ms(int64_t timeout_ms) { timeout_ms_ = timeout_ms; }
  // (The shared-memory mesh's single-copy path; MPI moves the bytes its own way.)
  bool cross_memory() const { return false; }

  // The collectives, with the layouts and arguments of Communicator's.
  void barrier(int kind);
  void broadcast(int kind, float* buf, int64_t n, int root, Wire wire);
  void all_reduce(int kind, float* recv, const float* send, int64_t n, Wire wire);
  void all_gather(int kind, float* recv, const float* send, int64_t n, Wire wire);
  void reduce_scatter(int kind, float* recv, const float* send, int64_t n, Wire wire);
  void all_to_all(int kind, float* recv, const float* send, int64_t n, Wire wire);
  void all_to_allv(int kind, float* recv, const int64_t* recv_counts, const float* send, const int64_t* send_counts,
                   Wire wire);
  // Every rank receives rank 0's bytes (`data`, `n` are read on rank 0 only).
  std::vector<uint8_t> broadcast_bytes(const uint8_t* data, int64_t n);
  // Rank 0 receives every rank's bytes (in rank order); the others get an empty vector.
  std::vector<std::vector<uint8_t>> gather_bytes(const uint8_t* data, int64_t n);
  // Ends the job at once (MPI_Abort): every rank of the world exits with `code`.
  [[noreturn]] void abort(int code);
  // MPI_Finalize (called once, after the last collective).
  void finalize();

 private:
  void wait(void* request, const char* what, int kind);
  void* comm(int kind) const { return comms_.at(static_cast<size_t>(kind)); }
  // On the bf16 wire: the float32 values of src as 16-bit wire values in a staging buffer.
  const void* stage_send(const float* src, int64_t n, Wire wire, std::vector<uint16_t>& staging);

  const MpiLibrary* mpi_;
  int rank_ = 0;
  int size_ = 1;
  int64_t timeout_ms_;
  int launcher_pid_;
  std::vector<Group> groups_;
  std::vector<void*> comms_;   // MPI_Comm handles, one per group kind
  Stats stats_;
  bool finalized_ = false;
  std::vector<uint16_t> send16_, recv16_;
  std::vector<float> scratch_;
};

}  // namespace st::mesh
