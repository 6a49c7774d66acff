// Data-parallel training on libtorch's own distributed engine (c10d), as
// torch.nn.parallel.DistributedDataParallel runs it: a TCPStore rendezvous, a
// Gloo (CPU) or NCCL (CUDA) process group, the rank-0 broadcast of the module
// state (c10d::broadcast_coalesced) and the bucketed gradient all-reduce that
// overlaps backward (c10d::Reducer). tch binds none of this; the symbols live
// in the wheel's libtorch_cpu.so (libtorch_cuda.so for NCCL), the Gloo headers
// come from Debian's libgloo-dev.
//
// Every entry point catches C++ exceptions and returns them as a malloc'd
// message (NULL on success) that Rust frees with zoo_dist_free_error. Tensors
// arrive as tch's C_tensor pointers, which are at::Tensor* (torch_api.h).
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#ifdef ZOO_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  std::chrono::milliseconds timeout;
};

void group_wait(Group* g, const c10::intrusive_ptr<c10d::Work>& work) {
  work->wait(g->timeout);
}

char* message(const std::string& s) {
  char* m = static_cast<char*>(std::malloc(s.size() + 1));
  if (m != nullptr) {
    std::memcpy(m, s.c_str(), s.size() + 1);
  }
  return m;
}

// The first line of a c10 error: its "Exception raised from ..." backtrace
// means nothing to a user.
std::string first_lines(const std::exception& e) {
  std::string s = e.what();
  auto cut = s.find("\nException raised from");
  if (cut != std::string::npos) {
    s = s.substr(0, cut);
  }
  return s;
}

template <typename F>
char* guarded(F&& f) noexcept {
  try {
    f();
    return nullptr;
  } catch (const c10::Error& e) {
    return message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return message(first_lines(e));
  } catch (...) {
    return message("unknown C++ exception in c10d");
  }
}

std::vector<at::Tensor> tensors(at::Tensor* const* ts, size_t n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (size_t i = 0; i < n; i++) {
    v.push_back(*ts[i]);
  }
  return v;
}

bool loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

// Gloo's transport device, chosen as torch.distributed does: the interfaces of
// GLOO_SOCKET_IFNAME, else this host's address; on a loopback master address
// every rank is on this host, so bind to 127.0.0.1 (tests bind nothing else).
std::vector<std::shared_ptr<::gloo::transport::Device>> gloo_devices(const std::string& host) {
  std::vector<std::shared_ptr<::gloo::transport::Device>> devices;
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME")) {
    std::stringstream ss(ifname);
    std::string name;
    while (std::getline(ss, name, ',')) {
      if (!name.empty()) {
        devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
      }
    }
  }
  if (devices.empty()) {
    devices.push_back(
        loopback(host) ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                       : c10d::ProcessGroupGloo::createDefaultDevice());
  }
  return devices;
}

// Sum over the group, blocking (the autograd engine's thread is the caller).
void all_reduce(Group* g, at::Tensor& t) {
  std::vector<at::Tensor> v{t};
  group_wait(g, g->pg->allreduce(v));
}

// Synchronised batch norm (torch.nn.SyncBatchNorm): the batch statistics of
// every rank's batch together. Each rank's mean and sum of squared deviations
// are combined with the counts (Chan's parallel variance, as
// batch_norm_gather_stats_with_counts does: no cancellation of E[x^2] -
// E[x]^2), in float64. Backward all-reduces sum(dy) and sum(dy * (x - mean));
// the weight and bias gradients stay local and DDP's Reducer averages them.
// CUDA runs the same arithmetic through NCCL.
struct SyncBatchNorm : public torch::autograd::Function<SyncBatchNorm> {
  static std::vector<int64_t> reduce_dims(const at::Tensor& x) {
    std::vector<int64_t> dims{0};
    for (int64_t d = 2; d < x.dim(); d++) {
      dims.push_back(d);
    }
    return dims;
  }

  static at::Tensor as_channels(const at::Tensor& v, const at::Tensor& x) {
    std::vector<int64_t> shape(x.dim(), 1);
    shape[1] = x.size(1);
    return v.view(shape);
  }

  static at::Tensor forward(
      torch::autograd::AutogradContext* ctx,
      const at::Tensor& x,
      const at::Tensor& weight,
      const at::Tensor& bias,
      at::Tensor running_mean,
      at::Tensor running_var,
      double momentum,
      double eps,
      int64_t group) {
    auto* g = reinterpret_cast<Group*>(group);
    const int64_t c = x.size(1);
    const int64_t world = g->pg->getSize();
    const int64_t rank = g->pg->getRank();
    auto dims = reduce_dims(x);
    auto xd = x.to(at::kDouble);
    auto [var, mean] = at::var_mean(xd, dims, /*correction=*/0, /*keepdim=*/false);
    const double n = static_cast<double>(x.numel() / std::max<int64_t>(c, 1));
    // Row `rank` of a [world, 2C+1] table: mean, m2, count; summed, each row is one rank's.
    auto table = at::zeros({world, 2 * c + 1}, xd.options());
    table[rank].copy_(at::cat({mean, var * n, at::full({1}, n, xd.options())}));
    all_reduce(g, table);
    auto means = table.narrow(1, 0, c);
    auto m2s = table.narrow(1, c, c);
    auto counts = table.narrow(1, 2 * c, 1);
    auto total = counts.sum();
    auto gmean = (means * counts).sum(0) / total;
    auto m2 = (m2s + counts * (means - gmean).pow(2)).sum(0);
    auto gvar = m2 / total;
    auto invstd = (gvar + eps).rsqrt();
    const double count = total.item<double>();
    {
      at::NoGradGuard no_grad;
      if (running_mean.defined()) {
        running_mean.mul_(1 - momentum).add_(gmean.to(running_mean.scalar_type()), momentum);
      }
      if (running_var.defined()) {
        auto unbiased = count > 1 ? gvar * (count / (count - 1)) : gvar;
        running_var.mul_(1 - momentum).add_(unbiased.to(running_var.scalar_type()), momentum);
      }
    }
    auto mean_x = gmean.to(x.scalar_type());
    auto invstd_x = invstd.to(x.scalar_type());
    auto y = (x - as_channels(mean_x, x)) * as_channels(invstd_x * weight, x) + as_channels(bias, x);
    ctx->save_for_backward({x, weight, mean_x, invstd_x});
    ctx->saved_data["count"] = count;
    ctx->saved_data["group"] = group;
    return y;
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto x = saved[0];
    auto weight = saved[1];
    auto mean = saved[2];
    auto invstd = saved[3];
    auto* g = reinterpret_cast<Group*>(ctx->saved_data["group"].toInt());
    const double count = ctx->saved_data["count"].toDouble();
    auto dy = grads[0];
    auto dims = reduce_dims(x);
    auto xmu = x - as_channels(mean, x);
    auto sum_dy = dy.sum(dims);
    auto sum_dy_xmu = (dy * xmu).sum(dims);
    auto grad_weight = sum_dy_xmu * invstd;
    auto grad_bias = sum_dy;
    const int64_t c = x.size(1);
    auto both = at::cat({sum_dy, sum_dy_xmu}).to(at::kDouble);
    all_reduce(g, both);
    auto mean_dy = (both.narrow(0, 0, c) / count).to(x.scalar_type());
    auto mean_dy_xmu = (both.narrow(0, c, c) / count).to(x.scalar_type());
    auto grad_input = (dy - as_channels(mean_dy, x) - xmu * as_channels(invstd * invstd * mean_dy_xmu, x)) *
        as_channels(invstd * weight, x);
    return {grad_input, grad_weight, grad_bias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace

extern "C" {

void zoo_dist_free_error(char* e) noexcept {
  std::free(e);
}

// Whether this build can create NCCL groups.
bool zoo_dist_has_nccl() noexcept {
#ifdef ZOO_NCCL
  return true;
#else
  return false;
#endif
}

// Joins the group of `world` ranks whose store is at host:port. `server`: this
// rank serves the store (rank 0 outside torchrun; torchrun's agent serves it
// itself). `listen_fd` >= 0: the server takes over this socket, already bound
// and listening (so it listens on exactly the address Rust bound). `prefix`
// namespaces the keys (torchrun restarts). `device` < 0: Gloo on the CPU;
// otherwise NCCL on cuda:device.
char* zoo_dist_init(
    const char* host,
    int port,
    int rank,
    int world,
    bool server,
    int listen_fd,
    const char* prefix,
    int64_t timeout_ms,
    int device,
    void** out) noexcept {
  return guarded([&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = server;
    opts.numWorkers = world;
    opts.waitWorkers = true;  // clients count themselves in; the server waits for all
    opts.timeout = timeout;
    opts.multiTenant = server;
    if (server && listen_fd >= 0) {
      opts.masterListenFd = listen_fd;
    }
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    auto store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);
    auto pg = c10::make_intrusive<c10d::ProcessGroup>(store, rank, world);
    if (device < 0) {
      auto gopts = c10d::ProcessGroupGloo::Options::create(timeout);
      gopts->devices = gloo_devices(host);
      auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(
          c10::make_intrusive<c10d::PrefixStore>("cpu/", store), rank, world, gopts);
      pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, backend);
      pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    } else {
#ifdef ZOO_NCCL
      auto nopts = c10d::ProcessGroupNCCL::Options::create();
      nopts->timeout = timeout;
      auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(
          c10::make_intrusive<c10d::PrefixStore>("cuda/", store), rank, world, nopts);
      pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, backend);
      pg->setDefaultBackend(c10d::ProcessGroup::BackendType::NCCL);
#else
      throw std::runtime_error(
          "this zoo was built without NCCL (no nccl.h at build time): reinstall the torch "
          "wheel's nvidia-nccl package and rebuild, or train on the CPU with --device cpu");
#endif
    }
    *out = new Group{tcp, pg, timeout};
  });
}

// In-place sum over the group.
char* zoo_dist_all_reduce_sum(void* g, at::Tensor* t) noexcept {
  return guarded([&] {
    auto* group = static_cast<Group*>(g);
    std::vector<at::Tensor> v{*t};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    group_wait(group, group->pg->allreduce(v, o));
  });
}

// Copies rank `src`'s tensors into everyone's, in buckets of at most
// `bucket_bytes` (DDP's _sync_module_states: 250 MiB).
char* zoo_dist_broadcast(void* g, at::Tensor* const* ts, size_t n, int64_t bucket_bytes, int src) noexcept {
  return guarded([&] {
    auto* group = static_cast<Group*>(g);
    auto v = tensors(ts, n);
    if (!v.empty()) {
      at::NoGradGuard no_grad;
      c10d::broadcast_coalesced(group->pg, v, static_cast<size_t>(bucket_bytes), src);
    }
  });
}

// DDP's Reducer over `params` (the trained leaves, in the model's order), bucketed
// as DistributedDataParallel._ddp_init_helper does with find_unused_parameters
// off: one bucket (reversed order) until the first backward has recorded the
// order gradients arrive in, then rebuilt with a 1 MiB first bucket and 25 MiB
// buckets. Gradients are averaged over the world (the Reducer divides by it).
char* zoo_dist_reducer_new(void* g, at::Tensor* const* ps, size_t n, void** out) noexcept {
  return guarded([&] {
    auto* group = static_cast<Group*>(g);
    auto params = tensors(ps, n);
    std::vector<bool> sparse(params.size(), false);
    std::vector<size_t> limits{static_cast<size_t>(std::numeric_limits<int64_t>::max())};
    auto assigned = c10d::compute_bucket_assignment_by_size(params, limits, sparse);
    auto buckets = std::get<0>(assigned);
    std::reverse(buckets.begin(), buckets.end());
    constexpr int64_t kBucketBytes = 25 * 1024 * 1024;
    constexpr int64_t kFirstBucketBytes = 1024 * 1024;
    auto* reducer = new c10d::Reducer(
        params,
        buckets,
        group->pg,
        sparse,
        kBucketBytes,
        /*find_unused_parameters=*/false,
        /*gradient_as_bucket_view=*/false,
        /*param_names=*/{},
        kFirstBucketBytes,
        /*skip_all_reduce_unused_params=*/false,
        /*use_python_reducer=*/false,
        /*bucket_bytes_cap_list=*/{});
    *out = reducer;
  });
}

// DDP's _pre_forward; `sync`: this iteration's backward all-reduces (outside
// no_sync()). The buckets are rebuilt once, after the first synchronised
// backward has recorded the order gradients arrive in.
char* zoo_dist_reducer_before_forward(void* r, bool sync) noexcept {
  return guarded([&] {
    auto* reducer = static_cast<c10d::Reducer*>(r);
    if (sync) {
      reducer->prepare_for_forward();
    }
    reducer->rebuild_buckets();
  });
}

// DDP's _post_forward on a synchronised iteration: the next backward's hooks
// all-reduce each bucket as soon as its gradients are ready.
char* zoo_dist_reducer_after_forward(void* r) noexcept {
  return guarded([&] { static_cast<c10d::Reducer*>(r)->prepare_for_backward({}); });
}

// Training-mode batch norm over the whole group's batch (SyncBatchNorm above);
// the result is a new at::Tensor that tch owns.
char* zoo_dist_sync_batch_norm(
    void* g,
    at::Tensor* x,
    at::Tensor* weight,
    at::Tensor* bias,
    at::Tensor* running_mean,
    at::Tensor* running_var,
    double momentum,
    double eps,
    at::Tensor** out) noexcept {
  return guarded([&] {
    auto y = SyncBatchNorm::apply(
        *x, *weight, *bias, *running_mean, *running_var, momentum, eps, reinterpret_cast<int64_t>(g));
    *out = new at::Tensor(std::move(y));
  });
}

}  // extern "C"
