// zoo's `onednn` inference engine: a traced zoo model, frozen by libtorch (parameters become
// constants, batch norms are folded into the convolutions before them), then rewritten so that
// every 2-D convolution is one oneDNN primitive, as PyTorch's Inductor lowers convolutions on the
// CPU (torch._inductor.fx_passes.mkldnn_fusion):
//   - the weight is reordered once into oneDNN's blocked layout for the input shape it will see
//     (`mkldnn::_reorder_convolution_weight`),
//   - the activation after it (ReLU, ReLU6/clamp, hard-swish, SiLU, sigmoid, hard-sigmoid, tanh)
//     and a residual addition (with the ReLU after it) run as oneDNN post-ops
//     (`mkldnn::_convolution_pointwise`, `.binary`),
//   - activations stay dense channels-last tensors, so aten's pooling, concatenation and linear
//     layers between the convolutions take them as they are.
// Shapes come from one run of the frozen graph on the example input. ZOO_ONEDNN_DUMP=1 in the
// environment prints the rewritten graph to standard error.
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/freeze_module.h>
#include <torch/csrc/jit/runtime/interpreter.h>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstring>
#include <iostream>
#include <optional>
#include <unordered_map>
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

bool is(Node* n, const char* name) {
  return std::strcmp(n->kind().toQualString(), name) == 0;
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

// Runs `graph` once on `example` (shape analysis does not know every operator, e.g. the padding
// of TensorFlow ports) and records the sizes of every tensor the convolutions and additions see.
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
  const size_t first = graph->outputs().size();
  for (Value* v : wanted) graph->registerOutput(v);
  torch::jit::Stack stack{module._ivalue(), example};
  try {
    torch::jit::Code code(graph, "zoo_onednn_probe");
    torch::jit::InterpreterState(code).run(stack);
  } catch (...) {
    while (graph->outputs().size() > first) graph->eraseOutput(graph->outputs().size() - 1);
    throw;
  }
  while (graph->outputs().size() > first) graph->eraseOutput(graph->outputs().size() - 1);
  Shapes shapes;
  for (size_t i = 0; i < wanted.size(); i++) {
    const auto& iv = stack.at(first + i);
    if (iv.isTensor()) shapes[wanted[i]] = iv.toTensor().sizes().vec();
  }
  return shapes;
}

// oneDNN's blocked weights have no storage, so they cannot be graph constants: each becomes an
// attribute of the frozen module, read by a GetAttr on the graph's `self`.
int rewrite(torch::jit::Module& module, const std::shared_ptr<Graph>& graph, Shapes shapes,
            c10::ScalarType dtype) {
  static auto reorder = c10::Dispatcher::singleton()
                            .findSchemaOrThrow("mkldnn::_reorder_convolution_weight", "")
                            .typed<at::Tensor(const at::Tensor&, at::IntArrayRef, at::IntArrayRef, at::IntArrayRef,
                                              int64_t, at::OptionalIntArrayRef)>();
  // One name for both overloads: `getOperation()` below picks `.binary` by the inputs.
  const auto pointwise = c10::Symbol::fromQualString("mkldnn::_convolution_pointwise");
  int rewritten = 0;
  std::vector<Node*> nodes(graph->nodes().begin(), graph->nodes().end());
  for (Node* n : nodes) {
    auto conv = as_conv(n);
    if (!conv) continue;
    auto in_sizes = sizes_of(shapes, n->input(0));
    auto out_sizes = sizes_of(shapes, n->output());
    if (!in_sizes || in_sizes->size() != 4 || !out_sizes) continue;
    at::Tensor weight = conv->weight.to(dtype).contiguous();
    at::Tensor packed = reorder.call(weight, conv->padding, conv->stride, conv->dilation, conv->groups,
                                     at::OptionalIntArrayRef(*in_sizes));
    c10::IValue bias = conv->bias.isTensor() ? c10::IValue(conv->bias.toTensor().to(dtype)) : c10::IValue();

    // What follows: a unary activation, or an addition of a same-shaped tensor (then maybe a ReLU).
    Node* last = n;
    std::string unary = "none";
    std::vector<double> scalars;
    Value* other = nullptr;
    if (Node* u = sole_user(n->output())) {
      if (auto act = unary_of(u); act && u->input(0) == n->output()) {
        unary = act->first;
        scalars = act->second;
        last = u;
      } else if ((is(u, "aten::add") || is(u, "aten::add_")) && u->inputs().size() == 3) {
        auto alpha = number(u->input(2));
        Value* o = u->input(0) == n->output() ? u->input(1) : u->input(0);
        auto o_sizes = sizes_of(shapes, o);
        auto o_type = o->type()->cast<c10::TensorType>();
        bool same = o_sizes && *o_sizes == *out_sizes && o != n->output();
        // add_ writes into its first operand: only when that is the convolution's own output.
        bool in_place_ok = !is(u, "aten::add_") || u->input(0) == n->output();
        if (alpha && *alpha == 1.0 && same && in_place_ok && o_type) {
          other = o;
          last = u;
          if (Node* r = sole_user(u->output()); r && (is(r, "aten::relu") || is(r, "aten::relu_"))) {
            unary = "relu";
            last = r;
          }
        }
      }
    }
    torch::jit::WithInsertPoint guard(last);
    Graph& g = *graph;
    const std::string attr_name = "onednn_weight_" + std::to_string(rewritten);
    module.register_attribute(attr_name, c10::TensorType::get(), packed, /*is_param=*/false);
    Value* w = g.insertGetAttr(graph->inputs()[0], attr_name);
    Value* b = bias.isNone() ? none(g) : g.insertConstant(bias);
    Value* padding = g.insertConstant(conv->padding);
    Value* stride = g.insertConstant(conv->stride);
    Value* dilation = g.insertConstant(conv->dilation);
    Value* groups = g.insertConstant(conv->groups);
    Node* fused;
    if (other == nullptr) {
      fused = g.create(pointwise, {n->input(0), w, b, padding, stride, dilation, groups, g.insertConstant(unary),
                                   scalar_list(g, scalars), none(g)});
    } else {
      Value* unary_v = unary == "none" ? none(g) : g.insertConstant(unary);
      fused = g.create(pointwise, {n->input(0), other, w, b, padding, stride, dilation, groups,
                                    g.insertConstant(std::string("add")), g.insertConstant(1.0), unary_v,
                                    scalar_list(g, {}), none(g)});
    }
    fused->output()->setType(c10::TensorType::get());
    g.insertNode(fused);
    // The schema by its inputs: the overload (`.binary` or the plain one) is chosen here.
    fused->getOperation();
    // The probe's sizes of the replaced value hold for its replacement.
    if (auto sz = sizes_of(shapes, last->output())) shapes[fused->output()] = *sz;
    last->output()->replaceAllUsesWith(fused->output());
    rewritten++;
  }
  torch::jit::EliminateDeadCode(graph);
  return rewritten;
}

}  // namespace

extern "C" {

// The `onednn` inference copy of traced module `m` for inputs shaped like `example` in `dtype`'s
// precision; `*count` gets the number of convolutions rewritten. Null with `*err` on failure.
torch::jit::Module* zoo_onednn_optimized(const torch::jit::Module* m, const at::Tensor* example, int* count,
                                         char** err) noexcept {
  try {
    c10::InferenceMode guard;
    auto copy = m->clone();
    copy.eval();
    auto frozen = torch::jit::freeze(copy);
    auto graph = frozen.get_method("forward").graph();
    const Shapes shapes = probe(frozen, graph, *example);
    *count = rewrite(frozen, graph, shapes, example->scalar_type());
    if (std::getenv("ZOO_ONEDNN_DUMP")) std::cerr << *graph;
    return new torch::jit::Module(frozen);
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
