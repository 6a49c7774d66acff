// zoo's `onednn` inference engine: a traced zoo model, frozen by libtorch (parameters become
// constants, batch norms are folded into the convolutions before them), then rewritten so that
// every 2-D convolution is one oneDNN primitive, as PyTorch's Inductor lowers convolutions on the
// CPU (torch._inductor.fx_passes.mkldnn_fusion):
//   - the weight is reordered once into oneDNN's blocked layout for the input shape it will see
//     (`mkldnn::_reorder_convolution_weight`),
//   - the activation after it (ReLU, ReLU6/clamp, hard-swish, SiLU, sigmoid, hard-sigmoid, tanh)
//     and a residual addition (with the ReLU after it) run as oneDNN post-ops
//     (`mkldnn::_convolution_pointwise`; an addition accumulates into the other operand's buffer
//     where nothing reads it later, `_convolution_pointwise_.binary`, else `.binary`),
//   - activations stay dense channels-last tensors, so aten's pooling, concatenation and linear
//     layers between the convolutions take them as they are (oneDNN's blocked nChw16c layout
//     between the convolutions of a chain, with reorders at its ends, was measured too, 2026-12-07
//     on 2 Zen 4 cores: its kernels ran ResNet-50's last stage 5-15% faster, but whole forward
//     passes were level within noise, 0.90x on MobileNet-V2: not kept),
//   - the early layers, down to 1/16 of the input's resolution, run on slices of the batch in a
//     loop, so that their tensors stay in cache (`plan_slices`),
//   - each convolution's primitive is made once for each input shape it sees, by libtorch's own
//     oneDNN found by address (`cache_primitives`), where `_convolution_pointwise` makes its
//     primitive descriptor again on every call.
// Shapes come from one run of the frozen graph on the example input. ZOO_ONEDNN_DUMP=1 in the
// environment prints the rewritten graph to standard error; ZOO_ONEDNN_SLICE=0,
// ZOO_ONEDNN_CAT_AFFINE=0 and ZOO_ONEDNN_CACHED=0 turn the slices, the batch-norm fusion and the
// cached primitives off, for measuring.
//
// In int8 (`zoo_onednn_int8`) the convolutions become oneDNN's quantized ones instead, as
// PyTorch's x86 quantizer and Inductor lower them (see "int8" below).
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/freeze_module.h>
#include <torch/csrc/jit/runtime/interpreter.h>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/Parallel.h>
#include <ATen/native/Pool.h>
#include <immintrin.h>
#include <torch/custom_class.h>
#include <torch/library.h>

#include <dnnl.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <stdexcept>
#include <string>
#include <vector>

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

namespace {

char* dup_error(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

std::optional<std::vector<int64_t>> int_list(Value* v) {
  auto iv = torch::jit::toIValue(v);
  if (!iv) return std::nullopt;
  if (iv->isIntList()) return iv->toIntVector();
  if (iv->isInt()) return std::vector<int64_t>{iv->toInt()};
  return std::nullopt;
}

std::optional<at::Tensor> tensor_constant(Value* v) {
  auto iv = torch::jit::toIValue(v);
  if (!iv || !iv->isTensor()) return std::nullopt;
  return iv->toTensor();
}

std::optional<double> number(Value* v) {
  auto iv = torch::jit::toIValue(v);
  if (!iv) return std::nullopt;
  if (iv->isDouble()) return iv->toDouble();
  if (iv->isInt()) return static_cast<double>(iv->toInt());
  return std::nullopt;
}

bool is(const Node* n, const char* name) {
  return std::strcmp(n->kind().toQualString(), name) == 0;
}

// Zero padding (TensorFlow's "SAME" padding before a convolution): in uint8 it pads with the
// zero point, which stands for 0 exactly.
bool is_zero_pad(const Node* n) {
  if (!is(n, "aten::constant_pad_nd") || n->inputs().size() != 3) return false;
  auto value = torch::jit::toIValue(n->input(2));
  return value && (value->isNone() || (value->isScalar() && value->toScalar().toDouble() == 0.0));
}

// The sides a zero pad adds to a 4-D tensor's height and width: {top, bottom, left, right};
// nullopt for anything else (a negative side crops).
std::optional<std::array<int64_t, 4>> zero_pad_sides(const Node* n) {
  if (!is_zero_pad(n)) return std::nullopt;
  auto sides = int_list(n->input(1));
  if (!sides || (sides->size() != 2 && sides->size() != 4)) return std::nullopt;
  if (std::any_of(sides->begin(), sides->end(), [](int64_t v) { return v < 0; })) return std::nullopt;
  const auto& v = *sides;
  return std::array<int64_t, 4>{v.size() == 4 ? v[2] : 0, v.size() == 4 ? v[3] : 0, v[0], v[1]};
}

// Whether environment variable `name` is set to `value` (the ZOO_ONEDNN_* switches, for measuring).
bool env_is(const char* name, const char* value) {
  const char* env = std::getenv(name);
  return env && std::strcmp(env, value) == 0;
}

// Each value's sizes on the example input, for the values the rewrite asks about.
using Shapes = std::unordered_map<const Value*, std::vector<int64_t>>;

std::optional<std::vector<int64_t>> sizes_of(const Shapes& shapes, const Value* v) {
  auto it = shapes.find(v);
  if (it == shapes.end()) return std::nullopt;
  return it->second;
}

// A convolution the rewrite takes: non-transposed, 2-D, integer padding, constant weight.
struct Conv {
  Node* node;
  at::Tensor weight;
  c10::IValue bias;
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups;
};

std::optional<Conv> as_conv(Node* n) {
  Conv c{n, {}, {}, {}, {}, {}, 1};
  size_t groups_at;
  if (is(n, "aten::conv2d") && n->inputs().size() == 7) {
    groups_at = 6;
  } else if (is(n, "aten::_convolution") && n->inputs().size() >= 9) {
    auto transposed = torch::jit::toIValue(n->input(6));
    if (!transposed || !transposed->isBool() || transposed->toBool()) return std::nullopt;
    groups_at = 8;
  } else {
    return std::nullopt;
  }
  auto w = tensor_constant(n->input(1));
  if (!w || w->dim() != 4) return std::nullopt;
  auto bias = torch::jit::toIValue(n->input(2));
  if (!bias || !(bias->isNone() || bias->isTensor())) return std::nullopt;
  auto stride = int_list(n->input(3)), padding = int_list(n->input(4)), dilation = int_list(n->input(5));
  auto groups = torch::jit::toIValue(n->input(groups_at));
  if (!stride || !padding || !dilation || !groups || !groups->isInt()) return std::nullopt;
  auto pair = [](std::vector<int64_t> v) { return v.size() == 1 ? std::vector<int64_t>{v[0], v[0]} : v; };
  c.weight = *w;
  c.bias = *bias;
  c.stride = pair(*stride);
  c.padding = pair(*padding);
  c.dilation = pair(*dilation);
  c.groups = groups->toInt();
  if (c.stride.size() != 2 || c.padding.size() != 2 || c.dilation.size() != 2) return std::nullopt;
  return c;
}

// The oneDNN post-op for a unary node, with its scalars; nullopt for anything else.
std::optional<std::pair<std::string, std::vector<double>>> unary_of(Node* n) {
  using R = std::pair<std::string, std::vector<double>>;
  if (is(n, "aten::relu") || is(n, "aten::relu_")) return R{"relu", {}};
  if (is(n, "aten::relu6") || is(n, "aten::relu6_")) return R{"hardtanh", {0.0, 6.0}};
  if (is(n, "aten::hardswish") || is(n, "aten::hardswish_")) return R{"hardswish", {}};
  if (is(n, "aten::silu") || is(n, "aten::silu_")) return R{"swish", {}};
  if (is(n, "aten::sigmoid") || is(n, "aten::sigmoid_")) return R{"sigmoid", {}};
  if (is(n, "aten::hardsigmoid") || is(n, "aten::hardsigmoid_")) return R{"hardsigmoid", {}};
  if (is(n, "aten::tanh") || is(n, "aten::tanh_")) return R{"tanh", {}};
  if ((is(n, "aten::clamp") || is(n, "aten::clamp_") || is(n, "aten::hardtanh") || is(n, "aten::hardtanh_")) &&
      n->inputs().size() == 3) {
    auto lo = number(n->input(1)), hi = number(n->input(2));
    if (lo && hi) return R{"hardtanh", {*lo, *hi}};
  }
  return std::nullopt;
}

// The single node using `v`, if `v` has exactly one use (as that node's input 0 for unary ops).
Node* sole_user(Value* v) {
  if (v->uses().size() != 1) return nullptr;
  return v->uses()[0].user;
}

Value* scalar_list(Graph& g, const std::vector<double>& xs) {
  std::vector<Value*> items;
  for (double x : xs) items.push_back(g.insertConstant(x));
  auto list = g.createList(c10::OptionalType::create(c10::NumberType::get()), items);
  g.insertNode(list);
  return list->output();
}

Value* none(Graph& g) {
  return g.insertConstant(c10::IValue());
}

// Runs `graph` once on `input` with `wanted` as extra outputs, and gives their values.
std::vector<c10::IValue> run_with(torch::jit::Module& module, const std::shared_ptr<Graph>& graph,
                                  const std::vector<Value*>& wanted, const at::Tensor& input) {
  const size_t first = graph->outputs().size();
  for (Value* v : wanted) graph->registerOutput(v);
  torch::jit::Stack stack{module._ivalue(), input};
  try {
    torch::jit::Code code(graph, "zoo_onednn_probe");
    torch::jit::InterpreterState(code).run(stack);
  } catch (...) {
    while (graph->outputs().size() > first) graph->eraseOutput(graph->outputs().size() - 1);
    throw;
  }
  while (graph->outputs().size() > first) graph->eraseOutput(graph->outputs().size() - 1);
  return std::vector<c10::IValue>(stack.begin() + first, stack.end());
}

// Runs `graph` on `example` (shape analysis does not know every operator, e.g. the padding of
// TensorFlow ports) and records the sizes of every tensor the convolutions and additions see:
// from runs on its first one and two samples where those sizes scale with the batch.
Shapes probe(torch::jit::Module& module, const std::shared_ptr<Graph>& graph, const at::Tensor& example) {
  std::vector<Value*> wanted;
  for (Node* n : graph->nodes()) {
    if (as_conv(n) || is(n, "aten::add") || is(n, "aten::add_")) {
      for (Value* v : n->inputs()) {
        if (v->type()->cast<c10::TensorType>() && v->node()->kind() != c10::prim::Constant) wanted.push_back(v);
      }
      wanted.push_back(n->output());
    }
  }
  auto sizes_on = [&](const at::Tensor& x) {
    const auto values = run_with(module, graph, wanted, x);
    Shapes shapes;
    for (size_t i = 0; i < wanted.size(); i++) {
      if (values[i].isTensor()) shapes[wanted[i]] = values[i].toTensor().sizes().vec();
    }
    return shapes;
  };
  // A run on the whole batch would hold every activation of it at once (1.2 GB for resnet50's
  // 16 images). Runs on 1 and 2 samples do, where every size they give grows with the batch in
  // its first dimension alone: the batch's sizes follow.
  const int64_t n = example.dim() > 0 ? example.size(0) : 0;
  if (n > 2) {
    const Shapes one = sizes_on(example.narrow(0, 0, 1)), two = sizes_on(example.narrow(0, 0, 2));
    Shapes scaled;
    bool linear = one.size() == two.size();
    for (const auto& [v, s1] : one) {
      const auto s2 = two.find(v);
      linear = linear && s2 != two.end() && !s1.empty() && s2->second.size() == s1.size() &&
               s2->second[0] == 2 * s1[0] && std::equal(s1.begin() + 1, s1.end(), s2->second.begin() + 1);
      if (!linear) break;
      scaled[v] = s1;
      scaled[v][0] = s1[0] * n;
    }
    if (linear) return scaled;
  }
  return sizes_on(example);
}

// A convolution with what oneDNN runs after it as post-ops: a unary activation, or the addition
// of a same-shaped tensor `other` (then maybe a ReLU). `last` is the last node it replaces;
// `out` that node's output.
struct Group {
  Conv conv;
  Node* last;
  std::string unary = "none";
  std::vector<double> scalars;
  Value* other = nullptr;
  Value* out;
};

// The group that convolution `n` heads, if the rewrite can take it (known input and output
// sizes); `unary_ok` says which activations may be fused.
std::optional<Group> group_of(Node* n, const Shapes& shapes, bool (*unary_ok)(const std::string&)) {
  auto conv = as_conv(n);
  if (!conv) return std::nullopt;
  auto in_sizes = sizes_of(shapes, n->input(0));
  auto out_sizes = sizes_of(shapes, n->output());
  if (!in_sizes || in_sizes->size() != 4 || !out_sizes) return std::nullopt;
  Group grp{*conv, n};
  if (Node* u = sole_user(n->output())) {
    if (auto act = unary_of(u); act && u->input(0) == n->output() && unary_ok(act->first)) {
      grp.unary = act->first;
      grp.scalars = act->second;
      grp.last = u;
    } else if ((is(u, "aten::add") || is(u, "aten::add_")) && u->inputs().size() == 3) {
      auto alpha = number(u->input(2));
      Value* o = u->input(0) == n->output() ? u->input(1) : u->input(0);
      auto o_sizes = sizes_of(shapes, o);
      auto o_type = o->type()->cast<c10::TensorType>();
      bool same = o_sizes && *o_sizes == *out_sizes && o != n->output();
      // add_ writes into its first operand: only when that is the convolution's own output.
      bool in_place_ok = !is(u, "aten::add_") || u->input(0) == n->output();
      if (alpha && *alpha == 1.0 && same && in_place_ok && o_type) {
        grp.other = o;
        grp.last = u;
        if (Node* r = sole_user(u->output()); r && (is(r, "aten::relu") || is(r, "aten::relu_"))) {
          grp.unary = "relu";
          grp.last = r;
        }
      }
    }
  }
  grp.out = grp.last->output();
  return grp;
}

bool any_unary(const std::string&) {
  return true;
}

// The activations oneDNN's quantized convolution takes as post-ops.
bool int8_unary(const std::string& u) {
  return u == "relu" || u == "hardtanh" || u == "hardswish" || u == "swish";
}

// oneDNN's blocked weights have no storage, so they cannot be graph constants: each becomes an
// attribute of the frozen module, read by a GetAttr on the graph's `self`.
Value* packed_attr(torch::jit::Module& module, Graph& g, const std::string& name, const at::Tensor& packed) {
  module.register_attribute(name, c10::TensorType::get(), packed, /*is_param=*/false);
  return g.insertGetAttr(g.inputs()[0], name);
}

// Whether `v` is a tensor this graph made and nothing else holds: the output of a convolution
// the rewrite made (an in-place one's output is its `other`, which had no later readers), or of
// max pooling.
bool is_fresh(const Value* v) {
  const Node* n = v->node();
  return is(n, "mkldnn::_convolution_pointwise") || is(n, "mkldnn::_convolution_pointwise_") ||
         is(n, "aten::max_pool2d");
}

// Whether `user` only reads its input `v` (its output is no view of it).
bool only_reads(const torch::jit::Use& use) {
  const Node* u = use.user;
  if (is(u, "mkldnn::_convolution_pointwise_")) return use.offset != 0;
  return is(u, "mkldnn::_convolution_pointwise") || is(u, "aten::max_pool2d") || is(u, "aten::cat");
}

// Every fused residual addition `conv(x) + other` (then maybe a ReLU) whose `other` nothing
// reads afterwards becomes `mkldnn::_convolution_pointwise_.binary`: the convolution accumulates
// into `other`'s buffer (oneDNN's `sum` post-op), as Inductor lowers it where `other` may be
// overwritten. The out-of-place `.binary` copies `other` on every call (libtorch 2.11), which
// cost resnet50 about a tenth of its time. Gives the number of additions turned.
int accumulate_residuals(const std::shared_ptr<Graph>& graph) {
  const auto in_place = c10::Symbol::fromQualString("mkldnn::_convolution_pointwise_");
  int turned = 0;
  std::vector<Node*> nodes(graph->nodes().begin(), graph->nodes().end());
  for (Node* n : nodes) {
    if (!is(n, "mkldnn::_convolution_pointwise") || n->inputs().size() != 13) continue;
    Value* other = n->input(1);
    auto binary = torch::jit::toIValue(n->input(8));
    auto unary = torch::jit::toIValue(n->input(10));
    if (!binary || !binary->isString() || binary->toStringRef() != "add") continue;
    if (!unary || !(unary->isNone() || (unary->isString() && unary->toStringRef() == "relu"))) continue;
    if (!is_fresh(other) || other == n->input(0)) continue;
    bool read_before = std::all_of(other->uses().begin(), other->uses().end(), [&](const torch::jit::Use& use) {
      if (use.user == n) return use.offset == 1;
      return use.user->owningBlock() == n->owningBlock() && use.user->isBefore(n) && only_reads(use);
    });
    if (!read_before) continue;
    Graph& g = *graph;
    torch::jit::WithInsertPoint guard(n);
    std::vector<Value*> inputs = {other, n->input(0)};
    for (size_t i = 2; i < 13; i++) inputs.push_back(n->input(i));
    Node* acc = g.insertNode(g.create(in_place, inputs));
    acc->output()->setType(c10::TensorType::get());
    acc->getOperation();
    n->output()->replaceAllUsesWith(acc->output());
    n->destroy();
    turned++;
  }
  return turned;
}

// ---- cached primitives: each convolution's oneDNN primitive made once, not on every call ----
//
// `mkldnn::_convolution_pointwise` makes a oneDNN primitive descriptor on every call (memory
// descriptors, attributes, the descriptor, a primitive-cache look-up) before it runs the kernel:
// about 30 us a call here, which the other thread spends spinning. On a mobile network, whose
// convolutions are small, that is a tenth of the forward pass. libtorch does not export oneDNN's
// API, but its symbol table lists oneDNN's C functions (local symbols): zoo finds them there (the
// same oneDNN, version-checked against the wheel's headers, with libtorch's thread pool) and makes
// each convolution's primitive once per input shape, with the weight reordered for it once. Where
// the functions cannot be found (another libtorch, another CPU architecture) the rewrite keeps
// `_convolution_pointwise`.

// oneDNN's C functions zoo calls, resolved by address.
#define ZOO_DNNL_FUNCTIONS(X)                                                                               \
  X(dnnl_version) X(dnnl_engine_create) X(dnnl_stream_create) X(dnnl_memory_desc_create_with_tag)           \
  X(dnnl_memory_desc_destroy) X(dnnl_memory_desc_get_size) X(dnnl_memory_desc_clone) X(dnnl_memory_create)  \
  X(dnnl_memory_destroy) X(dnnl_post_ops_create) X(dnnl_post_ops_destroy) X(dnnl_post_ops_append_eltwise)   \
  X(dnnl_post_ops_append_sum) X(dnnl_primitive_attr_create) X(dnnl_primitive_attr_destroy)                  \
  X(dnnl_primitive_attr_set_post_ops) X(dnnl_primitive_attr_set_scratchpad_mode)                           \
  X(dnnl_convolution_forward_primitive_desc_create) X(dnnl_reorder_primitive_desc_create)                   \
  X(dnnl_primitive_desc_query_md) X(dnnl_primitive_desc_destroy) X(dnnl_primitive_create)                   \
  X(dnnl_primitive_destroy) X(dnnl_primitive_execute) X(dnnl_memory_desc_equal)

struct Dnnl {
#define ZOO_DNNL_POINTER(f) decltype(&::f) f = nullptr;
  ZOO_DNNL_FUNCTIONS(ZOO_DNNL_POINTER)
#undef ZOO_DNNL_POINTER
  dnnl_engine_t engine = nullptr;
  std::string missing;  // why not, where it could not be had
};

// The oneDNN inside libtorch_cpu: its functions' addresses from the library file's symbol table
// and the library's load address.
const Dnnl& dnnl() {
  static const Dnnl api = [] {
    Dnnl d;
    struct Found {
      uintptr_t base = 0;
      std::string path;
    } lib;
    dl_iterate_phdr(
        [](dl_phdr_info* info, size_t, void* p) {
          auto* found = static_cast<Found*>(p);
          const std::string name = info->dlpi_name ? info->dlpi_name : "";
          const std::string want = "/libtorch_cpu.so";
          if (name.size() < want.size() || name.compare(name.size() - want.size(), want.size(), want) != 0) return 0;
          found->base = info->dlpi_addr;
          found->path = name;
          return 1;
        },
        &lib);
    if (lib.path.empty()) {
      d.missing = "libtorch_cpu.so is not loaded";
      return d;
    }
    std::unordered_map<std::string, uintptr_t> at;
    const int fd = open(lib.path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || fstat(fd, &st) != 0) {
      if (fd >= 0) close(fd);
      d.missing = "cannot read " + lib.path;
      return d;
    }
    void* map = mmap(nullptr, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
      d.missing = "cannot map " + lib.path;
      return d;
    }
    const char* data = static_cast<const char*>(map);
    const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(data);
    const bool elf64 = st.st_size > static_cast<off_t>(sizeof(Elf64_Ehdr)) && std::memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 &&
                       eh->e_ident[EI_CLASS] == ELFCLASS64 &&
                       eh->e_shoff + eh->e_shnum * sizeof(Elf64_Shdr) <= static_cast<uint64_t>(st.st_size);
    if (elf64) {
      const auto* sh = reinterpret_cast<const Elf64_Shdr*>(data + eh->e_shoff);
      for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum) continue;
        const auto* syms = reinterpret_cast<const Elf64_Sym*>(data + sh[i].sh_offset);
        const char* names = data + sh[sh[i].sh_link].sh_offset;
        for (size_t k = 0; k < sh[i].sh_size / sizeof(Elf64_Sym); k++) {
          const char* name = names + syms[k].st_name;
          if (ELF64_ST_TYPE(syms[k].st_info) == STT_FUNC && syms[k].st_value && std::strncmp(name, "dnnl_", 5) == 0)
            at[name] = lib.base + syms[k].st_value;
        }
      }
    }
    munmap(map, st.st_size);
#define ZOO_DNNL_FIND(f)                                     \
  if (auto it = at.find(#f); it != at.end()) {               \
    d.f = reinterpret_cast<decltype(&::f)>(it->second);      \
  } else if (d.missing.empty()) {                            \
    d.missing = std::string(#f) + " is not in " + lib.path;  \
  }
    ZOO_DNNL_FUNCTIONS(ZOO_DNNL_FIND)
#undef ZOO_DNNL_FIND
    if (!d.missing.empty()) return d;
    const dnnl_version_t* v = d.dnnl_version();
    if (v->major != DNNL_VERSION_MAJOR || v->minor != DNNL_VERSION_MINOR || v->patch != DNNL_VERSION_PATCH) {
      d.missing = "libtorch's oneDNN is " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                  std::to_string(v->patch) + ", its headers " + std::to_string(DNNL_VERSION_MAJOR) + "." +
                  std::to_string(DNNL_VERSION_MINOR) + "." + std::to_string(DNNL_VERSION_PATCH);
      return d;
    }
    if (d.dnnl_engine_create(&d.engine, dnnl_cpu, 0) != dnnl_success) d.missing = "no oneDNN CPU engine";
    return d;
  }();
  return api;
}

void check(dnnl_status_t s, const char* what) {
  TORCH_CHECK(s == dnnl_success, "oneDNN: ", what, " failed (status ", static_cast<int>(s), ")");
}

// The numbers of a list (a constant, or built from constants), as `scalar_list` makes them.
std::optional<std::vector<double>> numbers(Value* v) {
  std::vector<double> out;
  if (v->node()->kind() == c10::prim::ListConstruct) {
    for (Value* x : v->node()->inputs()) {
      auto d = number(x);
      if (!d) return std::nullopt;
      out.push_back(*d);
    }
    return out;
  }
  auto iv = torch::jit::toIValue(v);
  if (!iv || !iv->isList()) return std::nullopt;
  for (const auto& x : iv->toListRef()) {
    if (!x.isScalar()) return std::nullopt;
    out.push_back(x.toScalar().toDouble());
  }
  return out;
}

// A memory descriptor that frees itself.
struct Md {
  dnnl_memory_desc_t md = nullptr;
  Md(const std::vector<int64_t>& dims, dnnl_data_type_t dt, dnnl_format_tag_t tag) {
    check(dnnl().dnnl_memory_desc_create_with_tag(&md, static_cast<int>(dims.size()), dims.data(), dt, tag),
          "a memory descriptor");
  }
  Md(const Md&) = delete;
  Md& operator=(const Md&) = delete;
  ~Md() {
    if (md) dnnl().dnnl_memory_desc_destroy(md);
  }
};

// A dnnl_memory_t over `data` (not owned) that frees itself.
struct Mem {
  dnnl_memory_t m = nullptr;
  Mem(const_dnnl_memory_desc_t md, void* data) {
    check(dnnl().dnnl_memory_create(&m, md, dnnl().engine, data), "a memory object");
  }
  Mem(const Mem&) = delete;
  Mem& operator=(const Mem&) = delete;
  ~Mem() {
    if (m) dnnl().dnnl_memory_destroy(m);
  }
};

dnnl_data_type_t dnnl_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return dnnl_f32;
    case at::kBFloat16:
      return dnnl_bf16;
    case at::kHalf:
      return dnnl_f16;
    default:
      TORCH_CHECK(false, "zoo::conv: no oneDNN type for ", t);
  }
}

// One 2-D convolution with its post-ops (an activation, or the sum into the output's buffer then
// maybe a ReLU), as `_convolution_pointwise` runs it (ideep's attributes), with one primitive and
// one reordered weight for each input shape it has seen.
struct CachedConv : torch::CustomClassHolder {
  at::Tensor weight;  // plain OIHW, in the activations' type
  at::Tensor bias;    // undefined: none
  std::vector<int64_t> stride, padding, dilation;
  std::vector<int64_t> padding_r;  // the bottom and right padding (empty: as `padding`)
  int64_t groups = 1;
  std::string unary;  // "none", "relu", "hardtanh", ...
  std::vector<double> scalars;
  bool sum = false;  // accumulate into the output's buffer

  struct Plan {
    std::vector<int64_t> input;
    dnnl_primitive_t prim = nullptr;
    dnnl_memory_desc_t src = nullptr, dst = nullptr, scratch = nullptr, packed_md = nullptr;
    at::Tensor packed;  // the weight in the primitive's layout (shared by the plans that want it)
    std::optional<Mem> weights, bias;  // over `packed` and the bias, made once
    std::vector<int64_t> out;
    size_t scratch_bytes = 0;
    std::string failed;  // why no primitive could be made for this shape (then libtorch's operator runs)
    ~Plan() {
      const Dnnl& d = dnnl();
      if (prim) d.dnnl_primitive_destroy(prim);
      for (auto md : {src, dst, scratch, packed_md})
        if (md) d.dnnl_memory_desc_destroy(md);
    }
  };
  std::mutex mutex;
  std::vector<std::unique_ptr<Plan>> plans;

  Plan& plan_for(const at::Tensor& x) {
    std::lock_guard<std::mutex> lock(mutex);
    for (auto& p : plans)
      if (p->input == x.sizes()) return *p;
    static const bool forced = env_is("ZOO_ONEDNN_CACHED", "fallback");
    try {
      if (forced) throw std::runtime_error("ZOO_ONEDNN_CACHED=fallback");
      plans.push_back(make_plan(x));
    } catch (const std::exception& e) {
      // oneDNN has no primitive for this shape with these attributes: libtorch's operator, which
      // may choose other layouts, runs it instead.
      auto p = std::make_unique<Plan>();
      p->input = x.sizes().vec();
      p->failed = e.what();
      plans.push_back(std::move(p));
    }
    return *plans.back();
  }

  // libtorch's operator (`mkldnn::_convolution_pointwise`, or its in-place `.binary` for the
  // sum), for a shape whose primitive could not be made here.
  at::Tensor fallback(const at::Tensor& input, const at::Tensor& acc) {
    // libtorch's operator pads both sides alike: uneven padding is a padded copy first.
    at::Tensor x = input;
    std::vector<int64_t> pad = padding;
    if (!padding_r.empty() && padding_r != padding) {
      x = at::constant_pad_nd(input, {padding[1], padding_r[1], padding[0], padding_r[0]}, 0)
              .contiguous(at::MemoryFormat::ChannelsLast);
      pad = {0, 0};
    }
    c10::List<std::optional<at::Scalar>> s;
    for (double v : scalars) s.push_back(at::Scalar(v));
    const c10::IValue b = bias.defined() ? c10::IValue(bias) : c10::IValue();
    torch::jit::Stack stack;
    if (sum) {
      static const auto op =
          c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_convolution_pointwise_", "binary");
      stack = {acc, x, weight, b, pad, stride, dilation, groups, std::string("add"), at::Scalar(1.0),
               unary == "none" ? c10::IValue() : c10::IValue(unary), s, c10::IValue()};
      op.callBoxed(stack);
    } else {
      static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_convolution_pointwise", "");
      stack = {x, weight, b, pad, stride, dilation, groups, unary, s, c10::IValue()};
      op.callBoxed(stack);
    }
    return stack.at(0).toTensor();
  }

  std::unique_ptr<Plan> make_plan(const at::Tensor& x) {
    const Dnnl& d = dnnl();
    auto plan = std::make_unique<Plan>();
    plan->input = x.sizes().vec();
    const int64_t n = x.size(0), ic = x.size(1), oc = weight.size(0), kh = weight.size(2), kw = weight.size(3);
    const std::vector<int64_t>& pad_r = padding_r.empty() ? padding : padding_r;
    auto out_size = [&](int64_t in, int i, int64_t k) {
      return (in + padding[i] + pad_r[i] - dilation[i] * (k - 1) - 1) / stride[i] + 1;
    };
    plan->out = {n, oc, out_size(x.size(2), 0, kh), out_size(x.size(3), 1, kw)};
    const dnnl_data_type_t dt = dnnl_type(x.scalar_type());
    Md src(plan->input, dt, dnnl_nhwc), dst(plan->out, dt, dnnl_nhwc);
    const bool grouped = groups > 1;
    const std::vector<int64_t> wdims = grouped ? std::vector<int64_t>{groups, oc / groups, ic / groups, kh, kw}
                                               : std::vector<int64_t>{oc, ic, kh, kw};
    Md wany(wdims, dt, dnnl_format_tag_any), wplain(wdims, dt, grouped ? dnnl_goihw : dnnl_oihw);
    std::optional<Md> bmd;
    if (bias.defined()) bmd.emplace(std::vector<int64_t>{oc}, dnnl_type(bias.scalar_type()), dnnl_a);
    dnnl_post_ops_t po;
    check(d.dnnl_post_ops_create(&po), "post-ops");
    dnnl_primitive_attr_t attr;
    check(d.dnnl_primitive_attr_create(&attr), "attributes");
    auto eltwise = [&](dnnl_alg_kind_t alg, float alpha, float beta) {
      check(d.dnnl_post_ops_append_eltwise(po, alg, alpha, beta), "an activation post-op");
    };
    if (sum) check(d.dnnl_post_ops_append_sum(po, 1.0f, 0, dnnl_data_type_undef), "the sum post-op");
    if (unary == "relu") eltwise(dnnl_eltwise_relu, 0.f, 0.f);
    else if (unary == "hardtanh") eltwise(dnnl_eltwise_clip, static_cast<float>(scalars.at(0)), static_cast<float>(scalars.at(1)));
    else if (unary == "hardswish") eltwise(dnnl_eltwise_hardswish, 1.f / 6.f, 0.5f);
    else if (unary == "swish") eltwise(dnnl_eltwise_swish, 1.f, 0.f);
    else if (unary == "sigmoid") eltwise(dnnl_eltwise_logistic, 0.f, 0.f);
    else if (unary == "hardsigmoid") eltwise(dnnl_eltwise_hardsigmoid, 1.f / 6.f, 0.5f);
    else if (unary == "tanh") eltwise(dnnl_eltwise_tanh, 0.f, 0.f);
    else TORCH_CHECK(unary == "none", "zoo::conv: no post-op for ", unary);
    check(d.dnnl_primitive_attr_set_post_ops(attr, po), "setting the post-ops");
    check(d.dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "the scratchpad mode");
    dnnl_dims_t strides{stride[0], stride[1]}, dilates{dilation[0] - 1, dilation[1] - 1}, pads_l{padding[0], padding[1]},
        pads_r{pad_r[0], pad_r[1]};
    dnnl_primitive_desc_t pd = nullptr;
    const dnnl_status_t made = d.dnnl_convolution_forward_primitive_desc_create(
        &pd, d.engine, dnnl_forward_inference, dnnl_convolution_direct, src.md, wany.md, bmd ? bmd->md : nullptr, dst.md, strides, dilates,
        pads_l, pads_r, attr);
    d.dnnl_post_ops_destroy(po);
    d.dnnl_primitive_attr_destroy(attr);
    check(made, "a convolution's primitive descriptor");
    struct PdGuard {
      dnnl_primitive_desc_t pd;
      ~PdGuard() { dnnl().dnnl_primitive_desc_destroy(pd); }
    } guard{pd};
    check(d.dnnl_primitive_create(&plan->prim, pd), "a convolution primitive");
    check(d.dnnl_memory_desc_clone(&plan->src, src.md), "a descriptor copy");
    check(d.dnnl_memory_desc_clone(&plan->dst, dst.md), "a descriptor copy");
    const_dnnl_memory_desc_t wmd = d.dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const_dnnl_memory_desc_t smd = d.dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    plan->scratch_bytes = smd ? d.dnnl_memory_desc_get_size(smd) : 0;
    if (plan->scratch_bytes) check(d.dnnl_memory_desc_clone(&plan->scratch, smd), "a descriptor copy");
    check(d.dnnl_memory_desc_clone(&plan->packed_md, wmd), "a descriptor copy");
    // The weight, reordered once into the primitive's layout; a plan for another batch size
    // whose primitive wants the same layout shares it (the probe's run on one sample makes a
    // plan for every convolution, the sliced layers run on slices and on the batch's remainder).
    for (const auto& other : plans)
      if (other->packed_md && d.dnnl_memory_desc_equal(other->packed_md, wmd)) {
        plan->packed = other->packed;
        break;
      }
    if (!plan->packed.defined()) {
      plan->packed = at::empty({static_cast<int64_t>(d.dnnl_memory_desc_get_size(wmd))}, weight.options().dtype(at::kByte));
      at::Tensor plain = weight.contiguous();
      Mem from(wplain.md, plain.data_ptr()), to(wmd, plan->packed.data_ptr());
      dnnl_primitive_desc_t rpd;
      check(d.dnnl_reorder_primitive_desc_create(&rpd, wplain.md, d.engine, wmd, d.engine, nullptr), "a weight reorder");
      PdGuard rguard{rpd};
      dnnl_primitive_t reorder;
      check(d.dnnl_primitive_create(&reorder, rpd), "a weight reorder");
      dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from.m}, {DNNL_ARG_TO, to.m}};
      const dnnl_status_t ran = d.dnnl_primitive_execute(reorder, stream(), 2, args);
      d.dnnl_primitive_destroy(reorder);
      check(ran, "the weight reorder");
    }
    plan->weights.emplace(wmd, plan->packed.data_ptr());
    if (bias.defined()) plan->bias.emplace(bmd->md, bias.data_ptr());
    return plan;
  }

  // This thread's stream (oneDNN's streams are not to be shared between threads).
  // Never destroyed: oneDNN may already be torn down when a thread exits.
  static dnnl_stream_t stream() {
    thread_local dnnl_stream_t s = nullptr;
    if (!s) check(dnnl().dnnl_stream_create(&s, dnnl().engine, dnnl_stream_default_flags), "a stream");
    return s;
  }

  // The convolution of `x`; with `acc` (same shape as the output, which it becomes), the sum.
  at::Tensor run(const at::Tensor& input, const at::Tensor& acc) {
    TORCH_CHECK(input.dim() == 4 && input.scalar_type() == weight.scalar_type(), "zoo::conv: a 4-D ",
                weight.scalar_type(), " input, got ", input.sizes(), " ", input.scalar_type());
    const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
    Plan& p = plan_for(x);
    if (!p.failed.empty()) return fallback(x, acc);
    at::Tensor out;
    if (sum) {
      TORCH_CHECK(acc.sizes() == p.out && acc.scalar_type() == x.scalar_type() &&
                      acc.is_contiguous(at::MemoryFormat::ChannelsLast),
                  "zoo::conv_add_: the accumulator is ", acc.sizes(), ", the output ", p.out);
      out = acc;
    } else {
      out = at::empty(p.out, x.options().memory_format(at::MemoryFormat::ChannelsLast));
    }
    const Dnnl& d = dnnl();
    Mem src(p.src, x.data_ptr()), dst(p.dst, out.data_ptr());
    std::vector<dnnl_exec_arg_t> args{{DNNL_ARG_SRC, src.m}, {DNNL_ARG_WEIGHTS, p.weights->m}, {DNNL_ARG_DST, dst.m}};
    if (p.bias) args.push_back({DNNL_ARG_BIAS, p.bias->m});
    std::optional<Mem> scratch;
    at::Tensor scratch_buffer;
    if (p.scratch_bytes) {
      scratch_buffer = at::empty({static_cast<int64_t>(p.scratch_bytes)}, x.options().dtype(at::kByte));
      scratch.emplace(p.scratch, scratch_buffer.data_ptr());
      args.push_back({DNNL_ARG_SCRATCHPAD, scratch->m});
    }
    check(d.dnnl_primitive_execute(p.prim, stream(), static_cast<int>(args.size()), args.data()), "a convolution");
    return out;
  }
};

at::Tensor cached_conv(const c10::intrusive_ptr<CachedConv>& conv, const at::Tensor& x) {
  return conv->run(x, at::Tensor());
}

at::Tensor cached_conv_add_(const c10::intrusive_ptr<CachedConv>& conv, const at::Tensor& acc, const at::Tensor& x) {
  return conv->run(x, acc);
}

// Whether a node between `from` and `to` (same block) may write `from`'s first input in place:
// an in-place operator (its name ends in `_`) reading it. Then `to` cannot read that input in
// place of `from`'s output.
bool written_between(const Node* from, const Node* to) {
  const Value* v = from->input(0);
  return std::any_of(v->uses().begin(), v->uses().end(), [&](const torch::jit::Use& u) {
    const std::string name = u.user->kind().toUnqualString();
    return u.user->isAfter(from) && u.user->isBefore(to) && !name.empty() && name.back() == '_';
  });
}

// Whether `cache_primitives` will replace the convolutions (oneDNN's functions were found, and
// ZOO_ONEDNN_CACHED=0 is not set).
bool caching_primitives() {
  return !env_is("ZOO_ONEDNN_CACHED", "0") && dnnl().missing.empty();
}

// Replaces every `mkldnn::_convolution_pointwise` the rewrite made (an activation, or none) and
// every `_convolution_pointwise_` (a residual sum into a buffer nothing reads later, maybe with a
// ReLU) by `zoo::conv` / `zoo::conv_add_` on a `CachedConv` held by the module; `weights` maps
// the packed weights' attribute names to the plain weights. `.binary` (a sum into a fresh copy)
// stays. Returns the number replaced; 0 where oneDNN's functions could not be found, or with
// ZOO_ONEDNN_CACHED=0 in the environment (ZOO_ONEDNN_CACHED=fallback keeps the nodes but runs
// libtorch's operator in them, as where oneDNN has no primitive for a shape: for testing).
int cache_primitives(torch::jit::Module& module, const std::shared_ptr<Graph>& graph,
                     const std::unordered_map<std::string, at::Tensor>& weights) {
  if (!caching_primitives()) {
    if (std::getenv("ZOO_ONEDNN_DUMP") && !dnnl().missing.empty())
      std::cerr << "no cached primitives: " << dnnl().missing << "\n";
    return 0;
  }
  const auto class_type = c10::getCustomClassType<c10::intrusive_ptr<CachedConv>>();
  int replaced = 0;
  std::vector<Node*> nodes(graph->nodes().begin(), graph->nodes().end());
  for (Node* n : nodes) {
    const bool plain = is(n, "mkldnn::_convolution_pointwise") && n->inputs().size() == 10;
    const bool acc = is(n, "mkldnn::_convolution_pointwise_") && n->inputs().size() == 13;
    if (!plain && !acc) continue;
    const size_t w_at = plain ? 1 : 2;
    Node* get = n->input(w_at)->node();
    if (get->kind() != c10::prim::GetAttr) continue;
    auto weight = weights.find(get->s(c10::attr::name));
    if (weight == weights.end()) continue;
    auto conv = c10::make_intrusive<CachedConv>();
    conv->weight = weight->second;
    auto bias = torch::jit::toIValue(n->input(w_at + 1));
    auto padding = int_list(n->input(w_at + 2)), stride = int_list(n->input(w_at + 3)),
         dilation = int_list(n->input(w_at + 4));
    auto groups = torch::jit::toIValue(n->input(w_at + 5));
    if (!bias || !padding || !stride || !dilation || !groups || !groups->isInt()) continue;
    if (bias->isTensor()) conv->bias = bias->toTensor().contiguous();
    conv->padding = *padding;
    conv->stride = *stride;
    conv->dilation = *dilation;
    conv->groups = groups->toInt();
    if (plain) {
      auto unary = torch::jit::toIValue(n->input(7));
      auto scalars = numbers(n->input(8));
      if (!unary || !unary->isString() || !scalars) continue;
      conv->unary = unary->toStringRef();
      conv->scalars = *scalars;
      if (conv->unary == "hardtanh" && conv->scalars.size() != 2) continue;
    } else {
      auto binary = torch::jit::toIValue(n->input(8));
      auto unary = torch::jit::toIValue(n->input(10));
      if (!binary || !binary->isString() || binary->toStringRef() != "add" || !unary) continue;
      conv->unary = unary->isNone() ? "none" : unary->toStringRef();
      if (conv->unary != "none" && conv->unary != "relu") continue;
      conv->sum = true;
    }
    // A zero pad before it (TensorFlow's "SAME" padding, one side more where the stride is 2)
    // becomes the primitive's own uneven padding: no padded copy, no zero taps.
    Value* input = n->input(plain ? 0 : 1);
    if (const auto sides = zero_pad_sides(input->node()); sides && !written_between(input->node(), n)) {
      const auto& [top, bottom, left, right] = *sides;
      conv->padding_r = {conv->padding[0] + bottom, conv->padding[1] + right};
      conv->padding = {conv->padding[0] + top, conv->padding[1] + left};
      input = input->node()->input(0);
    }
    Graph& g = *graph;
    torch::jit::WithInsertPoint guard(n);
    const std::string name = "onednn_conv_" + std::to_string(replaced);
    module.register_attribute(name, class_type, c10::IValue(conv), /*is_param=*/false);
    Value* obj = g.insertGetAttr(g.inputs()[0], name);
    Node* call = plain ? g.create(c10::Symbol::fromQualString("zoo::conv"), {obj, input})
                       : g.create(c10::Symbol::fromQualString("zoo::conv_add_"), {obj, n->input(0), input});
    call->output()->setType(c10::TensorType::get());
    g.insertNode(call);
    call->getOperation();
    n->output()->replaceAllUsesWith(call->output());
    n->destroy();
    replaced++;
  }
  torch::jit::EliminateDeadCode(graph);
  // The packed weights the replaced convolutions no longer read.
  std::unordered_set<std::string> read;
  for (Node* n : graph->nodes())
    if (n->kind() == c10::prim::GetAttr) read.insert(n->s(c10::attr::name));
  for (const auto& [name, _] : weights)
    if (!read.count(name)) module._ivalue()->setAttr(name, c10::IValue(at::Tensor()));
  return replaced;
}

int rewrite(torch::jit::Module& module, const std::shared_ptr<Graph>& graph, Shapes shapes,
            c10::ScalarType dtype) {
  static auto reorder = c10::Dispatcher::singleton()
                            .findSchemaOrThrow("mkldnn::_reorder_convolution_weight", "")
                            .typed<at::Tensor(const at::Tensor&, at::IntArrayRef, at::IntArrayRef, at::IntArrayRef,
                                              int64_t, at::OptionalIntArrayRef)>();
  // One name for both overloads: `getOperation()` below picks `.binary` by the inputs.
  const auto pointwise = c10::Symbol::fromQualString("mkldnn::_convolution_pointwise");
  int rewritten = 0;
  std::unordered_map<std::string, at::Tensor> plain;  // packed weight's attribute -> the weight
  std::vector<Node*> nodes(graph->nodes().begin(), graph->nodes().end());
  for (Node* n : nodes) {
    auto grp = group_of(n, shapes, any_unary);
    if (!grp) continue;
    const Conv& conv = grp->conv;
    at::Tensor weight = conv.weight.to(dtype).contiguous();
    at::Tensor packed = reorder.call(weight, conv.padding, conv.stride, conv.dilation, conv.groups,
                                     at::OptionalIntArrayRef(*sizes_of(shapes, n->input(0))));
    c10::IValue bias = conv.bias.isTensor() ? c10::IValue(conv.bias.toTensor().to(dtype)) : c10::IValue();
    torch::jit::WithInsertPoint guard(grp->last);
    Graph& g = *graph;
    const std::string w_name = "onednn_weight_" + std::to_string(rewritten);
    Value* w = packed_attr(module, g, w_name, packed);
    plain[w_name] = weight;
    Value* b = bias.isNone() ? none(g) : g.insertConstant(bias);
    Value* padding = g.insertConstant(conv.padding);
    Value* stride = g.insertConstant(conv.stride);
    Value* dilation = g.insertConstant(conv.dilation);
    Value* groups = g.insertConstant(conv.groups);
    Node* fused;
    if (grp->other == nullptr) {
      fused = g.create(pointwise, {n->input(0), w, b, padding, stride, dilation, groups, g.insertConstant(grp->unary),
                                   scalar_list(g, grp->scalars), none(g)});
    } else {
      Value* unary_v = grp->unary == "none" ? none(g) : g.insertConstant(grp->unary);
      fused = g.create(pointwise, {n->input(0), grp->other, w, b, padding, stride, dilation, groups,
                                    g.insertConstant(std::string("add")), g.insertConstant(1.0), unary_v,
                                    scalar_list(g, {}), none(g)});
    }
    fused->output()->setType(c10::TensorType::get());
    g.insertNode(fused);
    // The schema by its inputs: the overload (`.binary` or the plain one) is chosen here.
    fused->getOperation();
    // The probe's sizes of the replaced value hold for its replacement.
    if (auto sz = sizes_of(shapes, grp->out)) shapes[fused->output()] = *sz;
    grp->out->replaceAllUsesWith(fused->output());
    rewritten++;
  }
  torch::jit::EliminateDeadCode(graph);
  accumulate_residuals(graph);
  cache_primitives(module, graph, plain);
  return rewritten;
}

// ---- micro-batches: the early, memory-bound layers one slice of the batch at a time ----

// Whether node `n` computes each sample of its output from the same sample of its inputs alone.
bool per_sample(const Node* n) {
  static const char* kinds[] = {
      "mkldnn::_convolution_pointwise", "mkldnn::_convolution_pointwise_", "zoo::conv", "zoo::conv_add_",
      "aten::relu", "aten::relu_",
      "aten::clamp", "aten::clamp_", "aten::hardtanh", "aten::hardtanh_", "aten::add", "aten::add_", "aten::mul",
      "aten::mul_", "aten::sigmoid", "aten::sigmoid_", "aten::hardswish", "aten::hardswish_", "aten::hardsigmoid",
      "aten::silu", "aten::silu_", "aten::max_pool2d", "aten::avg_pool2d", "aten::constant_pad_nd", "aten::pad",
      "aten::contiguous", "aten::to", "zoo::cat_affine", "prim::ListConstruct", "aten::adaptive_avg_pool2d"};
  for (const char* k : kinds) {
    if (is(n, k)) return true;
  }
  if (is(n, "aten::batch_norm")) {  // with running statistics, not the batch's
    auto training = torch::jit::toIValue(n->input(5));
    return training && training->isBool() && !training->toBool();
  }
  if (is(n, "aten::cat") || is(n, "aten::select") || is(n, "aten::unsqueeze")) {  // on a dimension past the batch's
    auto dim = torch::jit::toIValue(n->input(1));
    return dim && dim->isInt() && dim->toInt() > 0;
  }
  if (is(n, "aten::mean") && n->inputs().size() >= 2) {  // a squeeze-excitation's pooling
    auto dims = torch::jit::toIValue(n->input(1));
    if (!dims || !dims->isIntList()) return false;
    auto ds = dims->toIntVector();
    return !ds.empty() && std::none_of(ds.begin(), ds.end(), [](int64_t d) { return d == 0 || d == -4; });
  }
  return false;
}

struct Cut {
  size_t nodes;  // the prefix: the first `nodes` of `Cuts::prefix`
  Value* value;  // the only prefix value read after it
};

struct Cuts {
  std::vector<Node*> prefix;  // the per-sample nodes that read the input, in order
  std::vector<Cut> at;        // the places to cut it, in order
};

// The places where the graph can be cut into a per-sample prefix and the rest.
Cuts cuts(const std::shared_ptr<Graph>& graph) {
  Value* x = graph->inputs().at(1);
  std::unordered_set<const Value*> dep{x};
  Cuts out;
  std::vector<Node*>& prefix = out.prefix;
  for (Node* n : graph->nodes()) {
    bool d = false;
    for (Value* v : n->inputs()) d = d || dep.count(v);
    if (!d) continue;
    if (!per_sample(n)) break;
    for (Value* v : n->outputs()) dep.insert(v);
    prefix.push_back(n);
    // The prefix values read after `n`.
    std::vector<Value*> live;
    for (Node* p : prefix) {
      for (Value* v : p->outputs()) {
        bool later = std::any_of(v->uses().begin(), v->uses().end(), [&](const torch::jit::Use& u) {
          return u.user == graph->return_node() || n->isBefore(u.user);
        });
        if (later) live.push_back(v);
      }
    }
    if (live.size() == 1 && live[0]->type()->cast<c10::TensorType>() && !is(n, "prim::ListConstruct"))
      out.at.push_back({prefix.size(), live[0]});
  }
  return out;
}

// Runs the prefix `cuts` found, up to `cut`, on slices of `slice` samples (the last one maybe
// smaller), in a loop, and concatenates what they give.
int micro_batch(const std::shared_ptr<Graph>& graph, const Cuts& cs, const Cut& cut, int64_t slice) {
  Graph& g = *graph;
  Value* x = graph->inputs().at(1);
  const std::vector<Node*> prefix(cs.prefix.begin(), cs.prefix.begin() + cut.nodes);
  std::vector<torch::jit::Use> outside(cut.value->uses().begin(), cut.value->uses().end());
  outside.erase(std::remove_if(outside.begin(), outside.end(),
                               [&](const torch::jit::Use& u) {
                                 return std::find(prefix.begin(), prefix.end(), u.user) != prefix.end();
                               }),
                outside.end());
  torch::jit::WithInsertPoint guard(prefix.back()->next());
  Value* slices = g.insert(c10::aten::split, {x, slice, 0});
  Value* count = g.insert(c10::aten::len, {slices});
  Value* results = g.insertNode(g.createList(c10::TensorType::get(), {}))->output();
  Value* yes = g.insertConstant(true);
  Node* loop = g.insertNode(g.create(c10::prim::Loop, {count, yes}, 0));
  torch::jit::Block* body = loop->addBlock();
  Value* i = body->addInput()->setType(c10::IntType::get());
  body->registerOutput(yes);
  Value* piece;
  {
    torch::jit::WithInsertPoint in_body(body);
    piece = g.insert(c10::aten::__getitem__, {slices, i});
  }
  for (Node* p : prefix) {
    p->moveBefore(body->return_node());
    p->replaceInputWith(x, piece);
  }
  {
    torch::jit::WithInsertPoint in_body(body);
    g.insert(c10::aten::append, {results, cut.value});
  }
  Value* whole = g.insert(c10::aten::cat, {results, 0});
  for (const auto& u : outside) u.user->replaceInput(u.offset, whole);
  return static_cast<int>(prefix.size());
}

// The bytes of second-level cache of one core: sysconf (glibc reads cpuid), else sysfs (the
// cache whose level is 2), else 1 MiB.
int64_t l2_bytes() {
  const long c = sysconf(_SC_LEVEL2_CACHE_SIZE);
  if (c > 0) return c;
  for (int i = 0; i < 8; i++) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    long level = 0, kib = 0;
    if (FILE* f = std::fopen((dir + "level").c_str(), "r")) {
      if (std::fscanf(f, "%ld", &level) != 1) level = 0;
      std::fclose(f);
    }
    if (level != 2) continue;
    if (FILE* f = std::fopen((dir + "size").c_str(), "r")) {
      if (std::fscanf(f, "%ldK", &kib) != 1) kib = 0;
      std::fclose(f);
    }
    if (kib > 0) return static_cast<int64_t>(kib) * 1024;
  }
  return int64_t{1} << 20;
}

// Samples per slice: as many as keep the prefix's largest tensor within three times the
// second-level caches of the threads that run it (6 MiB on two Zen 4 cores of 1 MiB: the tensor
// a layer reads and the one it writes then stay in the third level). Measured there, batch 16
// (paired runs, BENCHMARKS.md): mobilenet_v2's 96x112x112 expansion is 4.8 MB a sample in
// float32, where slices of 1 ran 1.17x slices of 4, and 2.4 MB in bfloat16, where 2 ran 1.05x 4;
// resnet50's largest (1.6 MB a sample in bfloat16) ran best in slices of 4, 0.94x in slices of 1.
// A fixed slice was a tenth too slow on one side or the other.
int64_t slice_for(int64_t sample_bytes) {
  // Threads beyond the processors bring no cache of their own.
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), cpus > 0 ? cpus : 1));
  const int64_t budget = l2_bytes() * threads * 3;
  return std::max<int64_t>(1, budget / std::max<int64_t>(1, sample_bytes));
}

// Runs the early layers of `graph` on slices of the batch when a cut is found (see `cuts`): the
// last cut at 1/16 of the input's resolution or finer, the one of its resolution with the fewest
// values a sample (a block's output rather than an expansion inside it). A batch of 16 at 224x224
// moves activations of 77 MB through mobilenet_v2's second block, which run from DRAM at the
// speed of memory; slices (`slice_for`) keep them in cache. Gives the number of nodes moved into
// the loop (0: none; none either where one slice would hold the whole batch). `fixed` > 0 sets
// the slice, 0 turns slicing off, < 0 sizes it; so does ZOO_ONEDNN_SLICE=N in the environment
// (0: off), for measuring.
int plan_slices(torch::jit::Module& module, const std::shared_ptr<Graph>& graph, const at::Tensor& example,
                int64_t fixed) {
  if (const char* env = std::getenv("ZOO_ONEDNN_SLICE")) fixed = std::max<int64_t>(0, std::atoll(env));
  if (fixed == 0 || example.dim() != 4) return 0;
  const auto cs = cuts(graph);
  if (cs.at.empty()) return 0;
  // One run on one sample: the cuts' values, then every tensor the prefix makes.
  std::vector<Value*> values;
  for (const auto& c : cs.at) values.push_back(c.value);
  for (Node* n : cs.prefix)
    for (Value* v : n->outputs())
      if (v->type()->cast<c10::TensorType>()) values.push_back(v);
  const auto sample = run_with(module, graph, values, example.narrow(0, 0, 1));
  const int64_t input_area = example.size(2) * example.size(3);
  std::optional<size_t> pick;
  std::vector<int64_t> at;  // the picked cut's height and width
  for (size_t k = 0; k < cs.at.size(); k++) {
    const auto t = sample[k].toTensor();
    if (t.dim() != 4 || t.size(2) * t.size(3) * 256 < input_area) continue;
    const std::vector<int64_t> hw{t.size(2), t.size(3)};
    if (!pick || hw != at || t.numel() <= sample[*pick].toTensor().numel()) pick = k;
    at = hw;
  }
  if (!pick) return 0;
  // The largest tensor the slice's nodes make, for one sample.
  int64_t largest = 0;
  size_t k = cs.at.size();
  for (size_t p = 0; p < cs.at[*pick].nodes; p++)
    for (Value* v : cs.prefix[p]->outputs())
      if (v->type()->cast<c10::TensorType>()) {
        if (sample[k].isTensor()) largest = std::max<int64_t>(largest, sample[k].toTensor().nbytes());
        k++;
      }
  const int64_t slice = fixed > 0 ? fixed : slice_for(largest);
  if (slice >= example.size(0)) return 0;
  if (std::getenv("ZOO_ONEDNN_DUMP"))
    std::cerr << "slices of " << slice << " up to %" << cs.at[*pick].value->debugName() << ", "
              << sample[*pick].toTensor().sizes() << " a sample, the largest tensor " << largest << " bytes a sample\n";
  return micro_batch(graph, cs, cs.at[*pick], slice);
}

// ---- int8: post-training static quantization, as Inductor's x86 lowering runs it ----
//
// Every convolution becomes `onednn::qconv2d_pointwise` with its weight quantized per output
// channel (symmetric int8) and prepacked once; activations are quantized per tensor (asymmetric
// uint8) with the ranges seen on the calibration images. A value stays uint8 from the
// convolution that writes it to the convolutions that read it (and through max pooling and
// zero padding, as TensorFlow's "SAME" padding before a strided convolution), so that a chain
// such as a ResNet's bottlenecks quantizes only the image; the residual addition accumulates
// into the identity's uint8 tensor (oneDNN's `sum` post-op). Values anything else reads (the
// classifier's pooling, SE gates, concatenations) come out in float32.

struct QParams {
  double scale;
  int64_t zero_point;
};

// `levels`: 256, or 128 where the CPU lacks VNNI: there oneDNN multiplies uint8 by int8 pairwise
// into 16-bit sums (vpmaddubsw), which full-range activations can saturate. PyTorch's x86
// quantization config reduces the range the same way.
QParams qparams(double lo, double hi, int levels) {
  lo = std::min(lo, 0.0);
  hi = std::max(hi, 0.0);
  double scale = (hi - lo) / (levels - 1);
  if (!(scale > 1e-12)) scale = 1.0;  // a constant zero
  int64_t zp = static_cast<int64_t>(std::nearbyint(-lo / scale));
  return {scale, std::clamp<int64_t>(zp, 0, levels - 1)};
}

bool is_max_pool(const Node* n) {
  return is(n, "aten::max_pool2d") && n->inputs().size() == 6;
}

// A node uint8 passes through at its input's scale and zero point: max pooling (which commutes
// with the monotonic quantization) and zero padding.
bool passes_u8(const Node* n) {
  return is_max_pool(n) || is_zero_pad(n);
}

// Folds zero padding into the depthwise convolution that reads it (TensorFlow's "SAME" padding
// before a strided one pads one side more): padding (lo, hi) on a side becomes the convolution's
// own symmetric padding max(lo, hi), with the kernel given max(lo, hi) - lo zero taps before and
// max(lo, hi) - hi after, which reads the same pixels with the same weights and gives the same
// output size. A depthwise convolution is bound by memory, not arithmetic: the few zero taps
// cost less than writing the padded copy of its (expanded, widest) input. Returns the number
// of pads folded.
int fold_zero_pads(const std::shared_ptr<Graph>& graph) {
  int folded = 0;
  std::vector<Node*> nodes(graph->nodes().begin(), graph->nodes().end());
  for (Node* n : nodes) {
    auto conv = as_conv(n);
    const bool depthwise = conv && conv->groups > 1 && conv->weight.size(1) == 1;
    if (!depthwise || conv->dilation != std::vector<int64_t>{1, 1}) continue;
    Node* pad = n->input(0)->node();
    const auto sides = zero_pad_sides(pad);
    if (!sides) continue;
    const int64_t lo_h = (*sides)[0] + conv->padding[0], hi_h = (*sides)[1] + conv->padding[0];
    const int64_t lo_w = (*sides)[2] + conv->padding[1], hi_w = (*sides)[3] + conv->padding[1];
    const int64_t ph = std::max(lo_h, hi_h), pw = std::max(lo_w, hi_w);
    at::Tensor w = at::constant_pad_nd(conv->weight, {pw - lo_w, pw - hi_w, ph - lo_h, ph - hi_h}, 0);
    torch::jit::WithInsertPoint guard(n);
    n->replaceInput(0, pad->input(0));
    n->replaceInput(1, graph->insertConstant(w));
    n->replaceInput(4, graph->insertConstant(std::vector<int64_t>{ph, pw}));
    folded++;
  }
  if (folded) torch::jit::EliminateDeadCode(graph);
  return folded;
}

struct Int8Plan {
  std::vector<Group> groups;
  std::unordered_map<const Node*, size_t> by_conv, by_add;  // group index by its conv / its add
  std::unordered_map<const Value*, bool> u8;                // memo: the value stays uint8
  const std::shared_ptr<Graph>& graph;

  explicit Int8Plan(const std::shared_ptr<Graph>& g) : graph(g) {}

  bool graph_output(const Value* v) const {
    for (const Value* o : graph->outputs()) {
      if (o == v) return true;
    }
    return false;
  }

  // Written by a group, or by max pooling or zero padding of such a value.
  bool producible(const Value* v) const {
    const Node* p = v->node();
    for (const auto& grp : groups) {
      if (grp.out == v) return true;
    }
    return passes_u8(p) && producible(p->input(0));
  }

  // Read only by groups (as their input or their addition's other operand), or by max pooling
  // or zero padding whose output is read so.
  bool consumable(const Value* v) {
    if (v->uses().empty() || graph_output(v)) return false;
    for (const auto& use : v->uses()) {
      Node* u = use.user;
      if (auto it = by_conv.find(u); it != by_conv.end() && use.offset == 0) continue;
      if (auto it = by_add.find(u); it != by_add.end() && groups[it->second].other == v) continue;
      if (passes_u8(u) && use.offset == 0 && consumable(u->output())) continue;
      return false;
    }
    return true;
  }

  bool stays_u8(const Value* v) {
    if (auto it = u8.find(v); it != u8.end()) return it->second;
    bool yes = producible(v) && consumable(v);
    u8[v] = yes;
    return yes;
  }

  // Where the node replacing `user`'s use of a value is inserted.
  Node* replaced_at(Node* user) const {
    if (auto it = by_conv.find(user); it != by_conv.end()) return groups[it->second].last;
    if (auto it = by_add.find(user); it != by_add.end()) return groups[it->second].last;
    return user;
  }
};

// The values calibration measures: what the groups read and write, and max pooling's inputs.
std::vector<Value*> calibrated_values(const Int8Plan& plan) {
  std::vector<Value*> out;
  std::unordered_map<const Value*, bool> seen;
  auto add = [&](Value* v) {
    if (v && !seen[v]) {
      seen[v] = true;
      out.push_back(v);
    }
  };
  for (const auto& grp : plan.groups) {
    add(grp.conv.node->input(0));
    add(grp.other);
    add(grp.out);
  }
  return out;
}

// Each value's range over the calibration images, run a few at a time.
std::unordered_map<const Value*, QParams> calibrate(torch::jit::Module& module, const std::shared_ptr<Graph>& graph,
                                                    const std::vector<Value*>& values, const at::Tensor& images,
                                                    int levels) {
  std::vector<double> lo(values.size(), 0.0), hi(values.size(), 0.0);
  for (const auto& chunk : images.split(4)) {
    const auto got = run_with(module, graph, values, chunk.contiguous(at::MemoryFormat::ChannelsLast));
    for (size_t i = 0; i < values.size(); i++) {
      if (!got[i].isTensor()) continue;
      auto [mn, mx] = at::aminmax(got[i].toTensor().to(at::kFloat));
      lo[i] = std::min(lo[i], mn.item<double>());
      hi[i] = std::max(hi[i], mx.item<double>());
    }
  }
  std::unordered_map<const Value*, QParams> params;
  for (size_t i = 0; i < values.size(); i++) params[values[i]] = qparams(lo[i], hi[i], levels);
  return params;
}

// Max pooling of a uint8 channels-last tensor: aten's channels-last kernel indexes uint8 inputs
// with an 8-bit integer and refuses any map larger than 127 pixels. Quantization is monotonic,
// so the maximum of the uint8 values is the quantized maximum, at the same scale.
__attribute__((optimize("O3"))) at::Tensor max_pool2d_u8(const at::Tensor& x, c10::IntArrayRef kernel,
                                                           c10::IntArrayRef stride, c10::IntArrayRef padding,
                                                           c10::IntArrayRef dilation, bool ceil_mode) {
  TORCH_CHECK(x.scalar_type() == at::kByte && x.dim() == 4, "zoo::max_pool2d_u8 takes a 4-D uint8 tensor");
  auto two = [](c10::IntArrayRef v, int64_t dflt) {
    return v.empty() ? std::array<int64_t, 2>{dflt, dflt}
                     : v.size() == 1 ? std::array<int64_t, 2>{v[0], v[0]} : std::array<int64_t, 2>{v[0], v[1]};
  };
  const auto k = two(kernel, 1), pd = two(padding, 0), dl = two(dilation, 1);
  const auto st = stride.empty() ? k : two(stride, 1);
  const auto in = x.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t n = in.size(0), c = in.size(1), h = in.size(2), w = in.size(3);
  int64_t oh = at::native::pooling_output_shape<int64_t>(h, k[0], pd[0], st[0], dl[0], ceil_mode);
  int64_t ow = at::native::pooling_output_shape<int64_t>(w, k[1], pd[1], st[1], dl[1], ceil_mode);
  auto out = at::empty({n, c, oh, ow}, in.options().memory_format(at::MemoryFormat::ChannelsLast));
  const uint8_t* src = in.data_ptr<uint8_t>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  at::parallel_for(0, n * oh, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; row++) {
      const int64_t b = row / oh, y = row % oh;
      for (int64_t xo = 0; xo < ow; xo++) {
        uint8_t* o = dst + ((b * oh + y) * ow + xo) * c;
        std::memset(o, 0, c);
        for (int64_t i = 0; i < k[0]; i++) {
          const int64_t yi = y * st[0] - pd[0] + i * dl[0];
          if (yi < 0 || yi >= h) continue;
          for (int64_t j = 0; j < k[1]; j++) {
            const int64_t xi = xo * st[1] - pd[1] + j * dl[1];
            if (xi < 0 || xi >= w) continue;
            const uint8_t* p = src + ((b * h + yi) * w + xi) * c;
            for (int64_t ch = 0; ch < c; ch++) o[ch] = std::max(o[ch], p[ch]);
          }
        }
      }
    }
  });
  return out;
}

// Whether the CPU has fused multiply-adds (x86's FMA3), which aten's vectorized CPU kernels are
// compiled with: its batch norm computes `x * scale + shift` in one rounding there, in two
// elsewhere, and `cat_affine` rounds as it does.
bool cpu_has_fma() {
  static const bool yes = __builtin_cpu_supports("fma");
  return yes;
}

// `out[c] = in[c] * s[c] + t[c]` for `n` channels in two roundings (aten on a CPU without FMA3),
// clamped at 0 where `relu` (a NaN stays a NaN).
template <bool relu>
__attribute__((optimize("O3"), noinline)) void affine_channels(const float* __restrict in, const float* __restrict s,
                                                           const float* __restrict t, int64_t n,
                                                           float* __restrict out) {
  for (int64_t c = 0; c < n; c++) {
    const float y = in[c] * s[c] + t[c];
    out[c] = relu ? std::max(y, 0.0f) : y;
  }
}

// The same in one rounding (aten on a CPU with FMA3).
template <bool relu>
__attribute__((target("avx2,fma"), optimize("O3"), noinline)) void affine_channels_fma(
    const float* __restrict in, const float* __restrict s, const float* __restrict t, int64_t n,
    float* __restrict out) {
  for (int64_t c = 0; c < n; c++) {
    const float y = std::fma(in[c], s[c], t[c]);
    out[c] = relu ? std::max(y, 0.0f) : y;
  }
}

// Pixels [begin, end) of `cat_affine`, pixel by pixel (reading every input at that pixel: input
// by input, two memory streams at a time, ran slower; so did inlining the channel loop here and
// compiling it for AVX-512).
template <bool relu>
void cat_affine_pixels(
    const std::vector<const float*>& src, const std::vector<int64_t>& width, const float* scale, const float* shift,
    int64_t channels, int64_t begin, int64_t end, float* out) {
  const bool fma = cpu_has_fma();
  for (int64_t p = begin; p < end; p++) {
    int64_t at = 0;
    for (size_t i = 0; i < src.size(); i++) {
      const float *in = src[i] + p * width[i], *s = scale + at, *t = shift + at;
      float* o = out + p * channels + at;
      if (fma) {
        affine_channels_fma<relu>(in, s, t, width[i], o);
      } else {
        affine_channels<relu>(in, s, t, width[i], o);
      }
      at += width[i];
    }
  }
}

// The float32 scale and shift of an eval batch norm over `mean.numel()` channels (weight and
// bias optional) as aten's CPU batch norm computes them, so that `x * scale + shift` is its
// output to the bit: scale = weight * rsqrt(var + eps), shift = bias - mean * scale in one
// rounding (aten's kernels are compiled with fused multiply-adds).
std::pair<at::Tensor, at::Tensor> batch_norm_terms(const std::optional<at::Tensor>& weight,
                                                   const std::optional<at::Tensor>& bias, const at::Tensor& mean,
                                                   const at::Tensor& var, double eps) {
  at::Tensor inv = (var.to(at::kFloat) + eps).rsqrt();
  at::Tensor scale = (weight ? weight->to(at::kFloat) * inv : inv).contiguous();
  const at::Tensor m = mean.to(at::kFloat).contiguous();
  const at::Tensor b = bias ? bias->to(at::kFloat).contiguous() : at::zeros_like(m);
  TORCH_CHECK(scale.numel() == m.numel() && b.numel() == m.numel(), "batch norm parameters of different sizes");
  at::Tensor shift = at::empty_like(m);
  const float *sp = scale.data_ptr<float>(), *mp = m.data_ptr<float>(), *bp = b.data_ptr<float>();
  float* out = shift.data_ptr<float>();
  const bool fma = cpu_has_fma();
  for (int64_t c = 0; c < m.numel(); c++) out[c] = fma ? std::fma(-mp[c], sp[c], bp[c]) : bp[c] - mp[c] * sp[c];
  return {scale, shift};
}

// Whether this CPU runs bfloat16's `cat_affine_pixels` (AVX-512 F, BW and VL). Elsewhere bfloat16
// batch norms stay aten's.
bool bf16_cat_affine_supported() {
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl");
  return yes;
}

// Pixels [begin, end) of `cat_affine` in bfloat16, 16 channels a step, every input's channels at
// a pixel in one call (one call per piece and pixel, as the float32 loop makes, cost more than
// the arithmetic: each of DenseNet's pieces is 32 channels, 64 bytes). Computes as aten's
// bfloat16 batch norm does, so that the result is the same to the bit: each value widened to
// float32, `x * scale + shift` in one rounding, clamped at 0 where `relu` (a NaN stays a NaN),
// then rounded to bfloat16 to nearest even (a NaN to 0x7fc0).
template <bool relu>
__attribute__((target("avx512f,avx512bw,avx512vl"), optimize("O3"))) void cat_affine_pixels(
    const std::vector<const uint16_t*>& src, const std::vector<int64_t>& width, const float* scale, const float* shift,
    int64_t channels, int64_t begin, int64_t end, uint16_t* out) {
  const __m512i half_ulp = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1), nan = _mm512_set1_epi32(0x7fc00000);
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t p = begin; p < end; p++) {
    uint16_t* o = out + p * channels;
    int64_t at = 0;
    for (size_t i = 0; i < src.size(); i++) {
      const uint16_t* in = src[i] + p * width[i];
      const int64_t n = width[i];
      for (int64_t c = 0; c < n; c += 16) {
        const __mmask16 m = n - c >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - c)) - 1);
        const __m512 x = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, in + c)), 16));
        const __m512 s = _mm512_maskz_loadu_ps(m, scale + at + c), t = _mm512_maskz_loadu_ps(m, shift + at + c);
        __m512 y = _mm512_fmadd_ps(x, s, t);
        if (relu) y = _mm512_max_ps(zero, y);  // the second operand where either is NaN
        const __m512i b = _mm512_castps_si512(y);
        __m512i r = _mm512_add_epi32(b, _mm512_add_epi32(half_ulp, _mm512_and_si512(_mm512_srli_epi32(b, 16), one)));
        r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(y, y, _CMP_UNORD_Q), nan);
        _mm256_mask_storeu_epi16(o + at + c, m, _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
      }
      at += n;
    }
  }
}

// The concatenation along channels of `xs`, each channel then multiplied by `scale`, shifted by
// `shift` and, where `relu`, clamped at 0: a pre-activation network's cat -> batch_norm (eval)
// -> relu (DenseNet's every layer and transition) in one pass that reads each input once and
// writes the result once, where the three ops read and write the whole concatenation three
// times (DenseNet-121, float32, 2 cores: 33.8 -> 37 images/s). 2-D and 4-D float32 tensors, and
// bfloat16 ones where the CPU has AVX-512 (`bf16_cat_affine_supported`), come out channels-last
// (what the oneDNN convolutions read and write); anything else goes through aten.
at::Tensor cat_affine(const std::vector<at::Tensor>& xs, const at::Tensor& scale, const at::Tensor& shift,
                      bool relu) {
  TORCH_CHECK(!xs.empty(), "zoo::cat_affine takes at least one tensor");
  const auto& x0 = xs[0];
  const auto kind = x0.scalar_type();
  bool fast = (x0.dim() == 4 || x0.dim() == 2) &&
              (kind == at::kFloat || (kind == at::kBFloat16 && bf16_cat_affine_supported()));
  int64_t channels = 0;
  for (const auto& x : xs) {
    fast = fast && x.scalar_type() == kind && x.dim() == x0.dim() && x.size(0) == x0.size(0) &&
           (x.dim() == 2 || (x.size(2) == x0.size(2) && x.size(3) == x0.size(3)));
    channels += x.size(1);
  }
  TORCH_CHECK(scale.numel() == channels && shift.numel() == channels, "zoo::cat_affine: ", channels,
              " channels against ", scale.numel(), " scales");
  if (!fast) {
    auto shape = std::vector<int64_t>(x0.dim(), 1);
    shape[1] = channels;
    auto y = at::cat(xs, 1) * scale.view(shape).to(kind) + shift.view(shape).to(kind);
    return relu ? y.relu_() : y;
  }
  const auto layout = x0.dim() == 4 ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  std::vector<at::Tensor> in;
  for (const auto& x : xs) in.push_back(x.contiguous(layout));
  auto sizes = x0.sizes().vec();
  sizes[1] = channels;
  auto out = at::empty(sizes, x0.options().memory_format(layout));
  const int64_t pixels = out.numel() / channels;
  const auto s = scale.to(at::kFloat).contiguous(), t = shift.to(at::kFloat).contiguous();
  std::vector<int64_t> width;
  for (const auto& x : in) width.push_back(x.size(1));
  const float *sp = s.data_ptr<float>(), *tp = t.data_ptr<float>();
  const int64_t grain = std::max<int64_t>(1, 16384 / channels);
  // T: float, or uint16_t for bfloat16's bits.
  auto run = [&](auto zero) {
    using T = decltype(zero);
    std::vector<const T*> src;
    for (const auto& x : in) src.push_back(static_cast<const T*>(x.const_data_ptr()));
    T* dst = static_cast<T*>(out.data_ptr());
    at::parallel_for(0, pixels, grain, [&](int64_t begin, int64_t end) {
      if (relu) {
        cat_affine_pixels<true>(src, width, sp, tp, channels, begin, end, dst);
      } else {
        cat_affine_pixels<false>(src, width, sp, tp, channels, begin, end, dst);
      }
    });
  };
  if (kind == at::kBFloat16) {
    run(uint16_t{0});
  } else {
    run(0.0f);
  }
  return out;
}

TORCH_LIBRARY(zoo, m) {
  m.class_<CachedConv>("CachedConv");
  m.def("conv(__torch__.torch.classes.zoo.CachedConv conv, Tensor x) -> Tensor", cached_conv);
  m.def("conv_add_(__torch__.torch.classes.zoo.CachedConv conv, Tensor(a!) acc, Tensor x) -> Tensor(a!)",
        cached_conv_add_);
  m.def("max_pool2d_u8(Tensor x, int[] kernel, int[] stride, int[] padding, int[] dilation, bool ceil_mode) -> Tensor");
  m.impl("max_pool2d_u8", c10::DispatchKey::CPU, TORCH_FN(max_pool2d_u8));
  m.def("cat_affine(Tensor[] xs, Tensor scale, Tensor shift, bool relu) -> Tensor");
  m.impl("cat_affine", c10::DispatchKey::CPU, TORCH_FN(cat_affine));
}

// Rewrites every eval batch norm the freezing left (those not after a convolution: a
// pre-activation network's) as `zoo::cat_affine`, taking in the concatenation that feeds it
// (if nothing else reads that) and the ReLU after it (if nothing else reads the batch norm).
// Returns the number rewritten.
int fuse_batch_norms(const std::shared_ptr<Graph>& graph) {
  const auto op = c10::Symbol::fromQualString("zoo::cat_affine");
  int fused = 0;
  if (env_is("ZOO_ONEDNN_CAT_AFFINE", "0")) return 0;
  std::vector<Node*> nodes(graph->nodes().begin(), graph->nodes().end());
  for (Node* n : nodes) {
    if (!is(n, "aten::batch_norm") || n->inputs().size() != 9) continue;
    auto training = torch::jit::toIValue(n->input(5));
    auto mean = tensor_constant(n->input(3)), var = tensor_constant(n->input(4));
    auto eps = number(n->input(7));
    if (!training || !training->isBool() || training->toBool() || !mean || !var || !eps) continue;
    // bfloat16 where the CPU has the AVX-512 loop (elsewhere aten's three vectorized passes run
    // faster than a scalar one).
    if (!(mean->scalar_type() == at::kFloat || (mean->scalar_type() == at::kBFloat16 && bf16_cat_affine_supported())))
      continue;
    auto weight = torch::jit::toIValue(n->input(1)), bias = torch::jit::toIValue(n->input(2));
    if (!weight || !bias || !(weight->isNone() || weight->isTensor()) || !(bias->isNone() || bias->isTensor())) continue;
    auto optional = [](const c10::IValue& v) {
      return v.isTensor() ? std::optional<at::Tensor>(v.toTensor()) : std::optional<at::Tensor>();
    };
    auto [scale, shift] = batch_norm_terms(optional(*weight), optional(*bias), *mean, *var, *eps);
    // The pieces: a concatenation along channels nothing else reads, or the one input.
    Value* x = n->input(0);
    std::vector<Value*> pieces{x};
    Node* cat = x->node();
    if (is(cat, "aten::cat") && x->uses().size() == 1 && cat->input(0)->node()->kind() == c10::prim::ListConstruct) {
      auto dim = torch::jit::toIValue(cat->input(1));
      if (dim && dim->isInt() && dim->toInt() == 1) {
        auto in = cat->input(0)->node()->inputs();
        pieces.assign(in.begin(), in.end());
      }
    }
    Node* relu = nullptr;
    if (n->output()->uses().size() == 1) {
      Node* u = n->output()->uses()[0].user;
      if (is(u, "aten::relu") || is(u, "aten::relu_")) relu = u;
    }
    torch::jit::WithInsertPoint guard(n);
    Graph& g = *graph;
    Node* list = g.createList(c10::TensorType::get(), pieces);
    g.insertNode(list);
    Node* f = g.create(op, {list->output(), g.insertConstant(scale.contiguous()), g.insertConstant(shift.contiguous()),
                            g.insertConstant(relu != nullptr)});
    f->output()->setType(c10::TensorType::get());
    g.insertNode(f);
    f->getOperation();
    (relu ? relu : n)->output()->replaceAllUsesWith(f->output());
    fused++;
  }
  if (fused) torch::jit::EliminateDeadCode(graph);
  return fused;
}

// Rewrites `graph` (frozen, float32) for int8; `*quantized` gets the number of float32 tensors
// quantized at run time (the image, and values read after a float32 one). Returns the number of
// convolutions rewritten.
int rewrite_int8(torch::jit::Module& module, const std::shared_ptr<Graph>& graph, const Shapes& shapes,
                 const at::Tensor& calibration, bool reduce_range, int* quantized) {
  static auto prepack = c10::Dispatcher::singleton()
                            .findSchemaOrThrow("onednn::qconv_prepack", "")
                            .typed<at::Tensor(at::Tensor, at::Tensor, double, int64_t, c10::List<int64_t>,
                                              c10::List<int64_t>, c10::List<int64_t>, int64_t,
                                              std::optional<c10::List<int64_t>>)>();
  const auto qconv = c10::Symbol::fromQualString("onednn::qconv2d_pointwise");
  Int8Plan plan(graph);
  std::vector<Node*> nodes(graph->nodes().begin(), graph->nodes().end());
  for (Node* n : nodes) {
    auto grp = group_of(n, shapes, int8_unary);
    if (!grp) continue;
    if (grp->other) {
      // An addition of two convolutions' outputs goes to the first; the second is left alone.
      // oneDNN's `sum` post-op takes a ReLU after it, no other activation.
      Node* add = sole_user(n->output());
      if (plan.by_add.count(add) || (grp->unary != "none" && grp->unary != "relu")) {
        grp = Group{grp->conv, n};
        grp->out = n->output();
      } else {
        plan.by_add[add] = plan.groups.size();
      }
    }
    plan.by_conv[n] = plan.groups.size();
    plan.groups.push_back(*grp);
  }
  if (plan.groups.empty()) return 0;
  auto params = calibrate(module, graph, calibrated_values(plan), calibration, reduce_range ? 128 : 256);
  Graph& g = *graph;
  std::unordered_map<const Value*, Value*> as_u8;    // float32 value -> its uint8 replacement
  std::unordered_map<const Value*, Value*> cached_q;  // float32 value -> its quantization
  std::unordered_map<const Value*, Value*> replaced;  // float32 value -> what computes it now
  *quantized = 0;
  // What the rewrite asks of the original graph, asked before it changes it.
  struct Decided {
    Value* input;          // the convolution's input
    bool out_u8, other_u8;  // the group's result, and its addition's other operand, stay uint8
    bool last_reader;       // nothing reads the other operand after the addition
  };
  std::vector<Decided> decided;
  for (const auto& grp : plan.groups) {
    Decided d{grp.conv.node->input(0), plan.stays_u8(grp.out), grp.other && plan.stays_u8(grp.other), true};
    if (grp.other) {
      for (const auto& use : grp.other->uses()) {
        Node* u = use.user;
        if (plan.by_add.count(u) && plan.groups[plan.by_add.at(u)].conv.node == grp.conv.node) continue;
        if (!plan.replaced_at(u)->isBefore(grp.last)) d.last_reader = false;
      }
    }
    decided.push_back(d);
  }

  auto range_of = [&](const Value* v) -> QParams {
    auto it = params.find(v);
    if (it == params.end()) {
      throw std::runtime_error("no calibrated range for %" + v->debugName() + " (written by " +
                               v->node()->kind().toQualString() + ")");
    }
    return it->second;
  };
  auto quantize = [&](Value* v, const QParams& q) -> Value* {
    // Right after `v` is computed (or first thing, for the image), so it serves every use.
    Node* after = v->node()->kind() == c10::prim::Param ? nullptr : v->node();
    std::optional<torch::jit::WithInsertPoint> guard;
    if (after) guard.emplace(after->next());
    else guard.emplace(*g.nodes().begin());
    Node* qn = g.create(c10::Symbol::fromQualString("aten::quantize_per_tensor"),
                        {v, g.insertConstant(q.scale), g.insertConstant(q.zero_point),
                         g.insertConstant(static_cast<int64_t>(c10::ScalarType::QUInt8))});
    g.insertNode(qn);
    qn->getOperation();
    Node* rep = g.create(c10::Symbol::fromQualString("aten::int_repr"), {qn->output()});
    g.insertNode(rep);
    rep->getOperation();
    ++*quantized;
    return rep->output();
  };
  auto u8_of = [&](Value* v, bool fresh) -> std::pair<Value*, QParams> {
    if (auto it = as_u8.find(v); it != as_u8.end()) return {it->second, range_of(v)};
    const QParams q = range_of(v);
    Value* now = replaced.count(v) ? replaced.at(v) : v;
    if (fresh) return {quantize(now, q), q};
    auto it = cached_q.find(v);
    if (it == cached_q.end()) it = cached_q.emplace(v, quantize(now, q)).first;
    return {it->second, q};
  };

  std::unordered_map<const Node*, size_t> by_last;
  for (size_t i = 0; i < plan.groups.size(); i++) by_last[plan.groups[i].last] = i;
  int rewritten = 0;
  for (Node* n : nodes) {
    if (passes_u8(n) && as_u8.count(n->input(0))) {
      // uint8 in and out at the input's scale; zero padding pads with the zero point.
      const QParams q = range_of(n->input(0));
      torch::jit::WithInsertPoint guard(n);
      Node* u8;
      if (is_max_pool(n)) {
        u8 = g.create(c10::Symbol::fromQualString("zoo::max_pool2d_u8"),
                      {as_u8.at(n->input(0)), n->input(1), n->input(2), n->input(3), n->input(4), n->input(5)});
      } else {
        u8 = g.create(c10::Symbol::fromQualString("aten::constant_pad_nd"),
                      {as_u8.at(n->input(0)), n->input(1), g.insertConstant(c10::Scalar(q.zero_point))});
      }
      g.insertNode(u8);
      u8->getOperation();
      as_u8[n->output()] = u8->output();
      params[n->output()] = q;
      continue;
    }
    // A group is rewritten where its last node was: the other operand of its addition may be
    // computed after its convolution.
    auto at = by_last.find(n);
    if (at == by_last.end()) continue;
    const Group& grp = plan.groups[at->second];
    const Decided& d = decided[at->second];
    const Conv& conv = grp.conv;
    auto [qx, xq] = u8_of(d.input, false);
    const int64_t oc = conv.weight.size(0);
    at::Tensor w = conv.weight.to(at::kFloat).contiguous();
    at::Tensor w_scale = w.abs().amax({1, 2, 3}).clamp_min(1e-12).div(127.0);
    at::Tensor qw = w.div(w_scale.view({oc, 1, 1, 1})).round().clamp(-127, 127).to(at::kChar);
    using L = c10::List<int64_t>;
    at::Tensor packed = prepack.call(qw, w_scale, xq.scale, xq.zero_point, L(conv.stride), L(conv.padding),
                                     L(conv.dilation), conv.groups, L(*sizes_of(shapes, d.input)));
    const bool out_u8 = d.out_u8;
    // With a uint8 accumulator oneDNN writes uint8: a float32 result is then dequantized.
    const bool write_u8 = out_u8 || grp.other;
    const QParams oq = write_u8 ? range_of(grp.out) : QParams{1.0, 0};
    torch::jit::WithInsertPoint guard(grp.last);
    Value* pw = packed_attr(module, g, "onednn_qweight_" + std::to_string(rewritten), packed);
    std::vector<Value*> in{qx, g.insertConstant(xq.scale), g.insertConstant(xq.zero_point), pw,
                           g.insertConstant(w_scale), g.insertConstant(at::zeros({oc}, at::kLong))};
    if (grp.other) {
      // The sum post-op writes into the identity's tensor: a fresh one unless nothing reads the
      // shared uint8 value later.
      auto [qa, aq] = u8_of(grp.other, !d.other_u8);
      if (d.other_u8 && !d.last_reader) {
        Node* c = g.create(c10::Symbol::fromQualString("aten::clone"), {qa, none(g)});
        g.insertNode(c);
        c->getOperation();
        qa = c->output();
      }
      in.push_back(qa);
      in.push_back(conv.bias.isTensor() ? g.insertConstant(conv.bias.toTensor().to(at::kFloat)) : none(g));
      in.insert(in.end(), {g.insertConstant(conv.stride), g.insertConstant(conv.padding),
                           g.insertConstant(conv.dilation), g.insertConstant(conv.groups),
                           g.insertConstant(oq.scale), g.insertConstant(oq.zero_point), none(g),
                           g.insertConstant(aq.scale), g.insertConstant(aq.zero_point),
                           g.insertConstant(std::string("sum")), g.insertConstant(1.0),
                           grp.unary == "none" ? none(g) : g.insertConstant(grp.unary), scalar_list(g, {}),
                           none(g)});
    } else {
      in.push_back(conv.bias.isTensor() ? g.insertConstant(conv.bias.toTensor().to(at::kFloat)) : none(g));
      in.insert(in.end(), {g.insertConstant(conv.stride), g.insertConstant(conv.padding),
                           g.insertConstant(conv.dilation), g.insertConstant(conv.groups),
                           g.insertConstant(oq.scale), g.insertConstant(oq.zero_point),
                           out_u8 ? none(g) : g.insertConstant(static_cast<int64_t>(at::kFloat)),
                           g.insertConstant(grp.unary), scalar_list(g, grp.scalars), g.insertConstant(std::string(""))});
    }
    Node* fused = g.create(qconv, in);
    fused->output()->setType(c10::TensorType::get());
    g.insertNode(fused);
    fused->getOperation();
    if (out_u8) {
      as_u8[grp.out] = fused->output();
    } else if (write_u8) {
      Node* q = g.create(c10::Symbol::fromQualString("aten::_make_per_tensor_quantized_tensor"),
                         {fused->output(), g.insertConstant(oq.scale), g.insertConstant(oq.zero_point)});
      g.insertNode(q);
      q->getOperation();
      Node* dq = g.create(c10::Symbol::fromQualString("aten::dequantize"), {q->output()});
      g.insertNode(dq);
      dq->getOperation();
      grp.out->replaceAllUsesWith(dq->output());
      replaced[grp.out] = dq->output();
    } else {
      grp.out->replaceAllUsesWith(fused->output());
      replaced[grp.out] = fused->output();
    }
    rewritten++;
  }
  torch::jit::EliminateDeadCode(graph);
  return rewritten;
}

// A frozen copy of traced module `m` whose forward graph `rewrite_graph` has rewritten (given
// the sizes of `example`'s run), zero pads folded into the depthwise convolutions that read them
// where `fold_pads`, and the batch norms left fused with their concatenations and ReLUs first; ZOO_ONEDNN_DUMP prints the result. Null with `*err` on failure.
template <typename F>
torch::jit::Module* frozen_and_rewritten(const torch::jit::Module* m, const at::Tensor& example, bool fold_pads, char** err,
                                         F rewrite_graph) noexcept {
  try {
    c10::InferenceMode guard;
    auto copy = m->clone();
    copy.eval();
    auto frozen = torch::jit::freeze(copy);
    auto graph = frozen.get_method("forward").graph();
    if (fold_pads) fold_zero_pads(graph);
    fuse_batch_norms(graph);
    const Shapes shapes = probe(frozen, graph, example);
    rewrite_graph(frozen, graph, shapes);
    if (std::getenv("ZOO_ONEDNN_DUMP")) std::cerr << *graph;
    return new torch::jit::Module(frozen);
  } catch (const std::exception& e) {
    *err = dup_error(e.what());
    return nullptr;
  }
}

}  // namespace

extern "C" {

// The `onednn` inference copy of traced module `m` for inputs shaped like `example` in `dtype`'s
// precision; `*count` gets the number of convolutions rewritten, `*sliced` the number of nodes
// that run on slices of the batch (`plan_slices`: `slice` images a slice, 0 none, < 0 as many as
// the caches hold). Null with `*err` on failure.
torch::jit::Module* zoo_onednn_optimized(const torch::jit::Module* m, const at::Tensor* example, int64_t slice, int* count,
                                         int* sliced, char** err) noexcept {
  // Cached primitives take a zero pad as uneven padding (`cache_primitives`); for libtorch's
  // operator, which pads both sides alike, folding it into a depthwise kernel saves the copy.
  return frozen_and_rewritten(m, *example, !caching_primitives(), err, [&](torch::jit::Module& frozen, const std::shared_ptr<Graph>& graph,
                                                     const Shapes& shapes) {
    *count = rewrite(frozen, graph, shapes, example->scalar_type());
    *sliced = plan_slices(frozen, graph, *example, slice);
  });
}

// The int8 copy of traced module `m` for inputs shaped like `example` (float32), its activation
// ranges taken from `calibration` (images preprocessed as the inputs will be), in 7 bits where
// `reduce_range` (a CPU without VNNI); `*count` gets the number of convolutions rewritten,
// `*quantized` the float32 tensors quantized at run time.
torch::jit::Module* zoo_onednn_int8(const torch::jit::Module* m, const at::Tensor* example,
                                    const at::Tensor* calibration, bool reduce_range, int* count, int* quantized,
                                    char** err) noexcept {
  return frozen_and_rewritten(m, *example, true, err, [&](torch::jit::Module& frozen, const std::shared_ptr<Graph>& graph,
                                                     const Shapes& shapes) {
    *count = rewrite_int8(frozen, graph, shapes, *calibration, reduce_range, quantized);
  });
}

// `n` tensors `xs` concatenated along the channels, then an eval batch norm (`weight` and
// `bias` may be null) and, where `relu`, a ReLU: `zoo::cat_affine` with the batch norm's terms
// as `fuse_batch_norms` computes them. Null with `*err` on failure.
at::Tensor* zoo_cat_batch_norm(const at::Tensor* const* xs, size_t n, const at::Tensor* weight, const at::Tensor* bias,
                               const at::Tensor* mean, const at::Tensor* var, double eps, bool relu,
                               char** err) noexcept {
  try {
    c10::InferenceMode guard;
    std::vector<at::Tensor> pieces;
    for (size_t i = 0; i < n; i++) pieces.push_back(*xs[i]);
    auto some = [](const at::Tensor* t) { return t ? std::optional<at::Tensor>(*t) : std::optional<at::Tensor>(); };
    auto [scale, shift] = batch_norm_terms(some(weight), some(bias), *mean, *var, eps);
    return new at::Tensor(cat_affine(pieces, scale, shift, relu));
  } catch (const std::exception& e) {
    *err = dup_error(e.what());
    return nullptr;
  }
}

// `m.forward(x)` with `x` in channels-last layout (what the rewritten convolutions keep).
at::Tensor* zoo_onednn_forward(const torch::jit::Module* m, const at::Tensor* x, char** err) noexcept {
  try {
    c10::InferenceMode guard;
    auto xs = x->contiguous(at::MemoryFormat::ChannelsLast);
    auto out = const_cast<torch::jit::Module*>(m)->forward({xs});
    return new at::Tensor(out.toTensor().contiguous());
  } catch (const std::exception& e) {
    *err = dup_error(e.what());
    return nullptr;
  }
}

}  // extern "C"
