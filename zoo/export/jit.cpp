// TorchScript through libtorch's own tracer, driven from Rust: zoo's forward pass runs once under
// torch::jit::tracer::trace with a torch::jit::Module whose parameters and buffers are zoo's own
// tensors, registered under their checkpoint keys. The tracer turns every use of such a tensor
// into a GetAttr on that module (as torch.jit.trace does for an nn.Module), so the saved file's
// state_dict() has the reference's keys. zoo's layers push their paths as tracer scopes, which
// name the graph's nodes. The graph is also written out as JSON for zoo's ONNX writer.
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/serialization/import.h>

#include <cstring>
#include <map>
#include <sstream>

namespace {

char* dup(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

std::string quote(const std::string& s) {
  std::ostringstream o;
  o << '"';
  for (char c : s) {
    switch (c) {
      case '"': o << "\\\""; break;
      case '\\': o << "\\\\"; break;
      case '\n': o << "\\n"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          o << "\\u00" << "0123456789abcdef"[(c >> 4) & 15] << "0123456789abcdef"[c & 15];
        } else {
          o << c;
        }
    }
  }
  o << '"';
  return o.str();
}

// The module (or submodule) at a dotted path below `root`, created on the way.
torch::jit::Module submodule(torch::jit::Module& root, const std::string& path, const std::string& class_prefix) {
  torch::jit::Module cur = root;
  std::string prefix;
  std::stringstream parts(path);
  std::string part;
  while (std::getline(parts, part, '.')) {
    prefix += (prefix.empty() ? "" : "_") + part;
    if (auto sub = cur.attr(part, c10::IValue()); sub.isObject()) {
      cur = torch::jit::Module(sub.toObject());
      continue;
    }
    std::string name;
    for (char c : prefix) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    torch::jit::Module next(c10::QualifiedName(class_prefix + ".m_" + name), cur._ivalue()->compilation_unit(), true);
    cur.register_module(part, next);
    cur = next;
  }
  return cur;
}

void json_sizes(std::ostream& o, const torch::jit::Value* v) {
  auto t = v->type()->cast<c10::TensorType>();
  if (!t) {
    o << "null";
    return;
  }
  auto sizes = t->sizes().concrete_sizes();
  if (!sizes) {
    o << "null";
    return;
  }
  o << '[';
  for (size_t i = 0; i < sizes->size(); ++i) o << (i ? "," : "") << (*sizes)[i];
  o << ']';
}

void json_ivalue(std::ostream& o, const c10::IValue& v) {
  if (v.isNone()) {
    o << "{\"none\":true}";
  } else if (v.isBool()) {
    o << "{\"bool\":" << (v.toBool() ? "true" : "false") << '}';
  } else if (v.isInt()) {
    o << "{\"int\":" << v.toInt() << '}';
  } else if (v.isDouble()) {
    std::ostringstream d;
    d.precision(17);
    d << v.toDouble();
    o << "{\"float\":" << d.str() << '}';
  } else if (v.isString()) {
    o << "{\"str\":" << quote(v.toStringRef()) << '}';
  } else if (v.isIntList()) {
    o << "{\"ints\":[";
    auto l = v.toIntVector();
    for (size_t i = 0; i < l.size(); ++i) o << (i ? "," : "") << l[i];
    o << "]}";
  } else if (v.isDevice()) {
    o << "{\"str\":" << quote(v.toDevice().str()) << '}';
  } else if (v.isTensor() && v.toTensor().numel() <= 64) {
    auto t = v.toTensor().to(at::kCPU, at::kDouble).contiguous();
    o << "{\"tensor\":{\"sizes\":[";
    for (int64_t i = 0; i < t.dim(); ++i) o << (i ? "," : "") << t.size(i);
    o << "],\"dtype\":" << quote(c10::toString(v.toTensor().scalar_type())) << ",\"data\":[";
    const double* p = t.data_ptr<double>();
    std::ostringstream d;
    d.precision(17);
    for (int64_t i = 0; i < t.numel(); ++i) d << (i ? "," : "") << p[i];
    o << d.str() << "]}}";
  } else {
    o << "{\"unsupported\":" << quote(v.tagKind()) << '}';
  }
}

// The traced forward as JSON: the inputs, the nodes in order (kind, scope, input and output
// value ids, the constants' values, the parameters' checkpoint keys) and the outputs.
std::string graph_json(const torch::jit::Module& module) {
  auto graph = module.get_method("forward").graph()->copy();
  torch::jit::Inline(*graph);
  torch::jit::EliminateDeadCode(graph);
  std::map<const torch::jit::Value*, std::string> paths;
  paths[graph->inputs()[0]] = "";
  std::ostringstream o;
  o << "{\"inputs\":[";
  for (size_t i = 1; i < graph->inputs().size(); ++i) {
    o << (i > 1 ? "," : "") << "{\"id\":" << graph->inputs()[i]->unique() << ",\"sizes\":";
    json_sizes(o, graph->inputs()[i]);
    o << '}';
  }
  o << "],\"nodes\":[";
  bool first = true;
  for (auto* node : graph->nodes()) {
    if (node->kind() == c10::prim::GetAttr) {
      auto parent = paths.find(node->input());
      if (parent == paths.end()) throw std::runtime_error("GetAttr on a value that is not the module");
      std::string path = parent->second.empty() ? node->s(c10::attr::name) : parent->second + "." + node->s(c10::attr::name);
      paths[node->output()] = path;
      if (!node->output()->type()->isSubtypeOf(*c10::TensorType::get())) continue;
    }
    o << (first ? "" : ",") << "{\"kind\":" << quote(node->kind().toQualString());
    first = false;
    if (node->kind() == c10::prim::GetAttr) o << ",\"param\":" << quote(paths[node->output()]);
    if (node->kind() == c10::prim::Constant) {
      o << ",\"value\":";
      auto v = torch::jit::toIValue(node->output());
      if (v) json_ivalue(o, *v); else o << "{\"none\":true}";
    }
    auto scope = node->scope();
    std::string layer = scope && !scope->isBlank() ? scope->name().toUnqualString() : "";
    if (layer.rfind("__module.", 0) == 0) layer = layer.substr(9);
    o << ",\"scope\":" << quote(layer);
    o << ",\"inputs\":[";
    for (size_t i = 0; i < node->inputs().size(); ++i) o << (i ? "," : "") << node->inputs()[i]->unique();
    o << "],\"outputs\":[";
    for (size_t i = 0; i < node->outputs().size(); ++i) {
      o << (i ? "," : "") << "{\"id\":" << node->outputs()[i]->unique() << ",\"sizes\":";
      json_sizes(o, node->outputs()[i]);
      o << '}';
    }
    o << "]}";
  }
  o << "],\"outputs\":[";
  for (size_t i = 0; i < graph->outputs().size(); ++i) o << (i ? "," : "") << graph->outputs()[i]->unique();
  o << "]}";
  return o.str();
}

}  // namespace

extern "C" {

// zoo's forward pass: takes ownership of `input`, returns a new tensor, or null on failure.
typedef at::Tensor* (*zoo_forward_fn)(void* ctx, at::Tensor* input);

void zoo_jit_free_string(char* s) noexcept { std::free(s); }

void zoo_jit_free(torch::jit::Module* m) noexcept { delete m; }

// Traces `forward(ctx, input)` into a new module of class `class_name` holding `n` tensors
// (`is_buffer[i]` says parameter or buffer) under the dotted `names`. Returns the module, or null
// with `*err` set (free it with zoo_jit_free_string).
// `layers` are the paths of every layer the forward pass runs (each a submodule, created empty
// where it holds no tensors): the scopes zoo_jit_push_scope opens must name submodules.
torch::jit::Module* zoo_jit_trace(const char* class_name, size_t n, const char* const* names, at::Tensor* const* tensors,
                                  const bool* is_buffer, size_t n_layers, const char* const* layers, at::Tensor* input,
                                  zoo_forward_fn forward, void* ctx, char** err) noexcept {
  try {
    auto cu = std::make_shared<torch::jit::CompilationUnit>();
    std::string prefix = std::string("__torch__.zoo.") + class_name;
    auto module = std::make_unique<torch::jit::Module>(c10::QualifiedName(prefix), cu, true);
    for (size_t i = 0; i < n; ++i) {
      std::string name(names[i]);
      auto dot = name.rfind('.');
      auto owner = dot == std::string::npos ? *module : submodule(*module, name.substr(0, dot), prefix);
      std::string leaf = dot == std::string::npos ? name : name.substr(dot + 1);
      if (is_buffer[i]) {
        owner.register_buffer(leaf, *tensors[i]);
      } else {
        owner.register_parameter(leaf, *tensors[i], false);
      }
    }
    for (size_t i = 0; i < n_layers; ++i) submodule(*module, layers[i], prefix);
    auto traced = [&](torch::jit::Stack inputs) -> torch::jit::Stack {
      // The callee owns both tensors it is handed and returns (tch's C_tensor).
      at::Tensor* out = forward(ctx, new at::Tensor(inputs.at(0).toTensor()));
      if (!out) throw std::runtime_error("zoo's forward pass failed while tracing");
      at::Tensor y = *out;
      delete out;
      return {y};
    };
    auto result = torch::jit::tracer::trace(
        {*input}, traced, [](const torch::autograd::Variable&) { return std::string(); }, /*strict=*/false,
        /*force_outplace=*/false, module.get(), {"x"});
    auto graph = result.first->graph;
    auto fn = module->_ivalue()->compilation_unit()->create_function(
        c10::QualifiedName(*module->type()->name(), "forward"), graph);
    module->type()->addMethod(fn);
    return module.release();
  } catch (const std::exception& e) {
    *err = dup(e.what());
    return nullptr;
  }
}

// Opens a layer's scope while a trace is running (nodes created in it carry its path).
void zoo_jit_push_scope(const char* name) noexcept {
  // As Python's Module._slow_forward does: a TracedModuleForward block per layer, which the
  // tracer turns into a call of that submodule's own forward method.
  if (auto state = torch::jit::tracer::getTracingState()) state->graph->push_scope(std::string("__module.") + name);
}

void zoo_jit_pop_scope() noexcept {
  if (auto state = torch::jit::tracer::getTracingState()) state->graph->pop_scope();
}

bool zoo_jit_tracing() noexcept { return torch::jit::tracer::isTracing(); }

// Saves `m` (a TorchScript archive) with one extra file, `extra/<extra_name>`.
bool zoo_jit_save(const torch::jit::Module* m, const char* path, const char* extra_name, const char* extra,
                  char** err) noexcept {
  try {
    torch::jit::ExtraFilesMap files;
    files[extra_name] = extra;
    m->save(path, files);
    return true;
  } catch (const std::exception& e) {
    *err = dup(e.what());
    return false;
  }
}

// The forward graph, inlined, as JSON (see graph_json), or null with `*err` set.
char* zoo_jit_graph_json(const torch::jit::Module* m, char** err) noexcept {
  try {
    return dup(graph_json(*m));
  } catch (const std::exception& e) {
    *err = dup(e.what());
    return nullptr;
  }
}

// An inference copy of `m`: eval mode, frozen (parameters folded into the graph as constants,
// batch norms into the convolutions before them) and optimized for inference (oneDNN
// convolutions with prepacked weights and fused activations, as torch.jit.optimize_for_inference).
torch::jit::Module* zoo_jit_optimized(const torch::jit::Module* m, char** err) noexcept {
  try {
    auto copy = m->clone();
    copy.eval();
    auto frozen = torch::jit::freeze(copy);
    return new torch::jit::Module(torch::jit::optimize_for_inference(frozen));
  } catch (const std::exception& e) {
    *err = dup(e.what());
    return nullptr;
  }
}

// `m.forward(x)` under no_grad; null with `*err` set on failure.
at::Tensor* zoo_jit_forward(const torch::jit::Module* m, const at::Tensor* x, char** err) noexcept {
  try {
    c10::InferenceMode guard;
    auto out = const_cast<torch::jit::Module*>(m)->forward({*x});
    return new at::Tensor(out.toTensor());
  } catch (const std::exception& e) {
    *err = dup(e.what());
    return nullptr;
  }
}

}
