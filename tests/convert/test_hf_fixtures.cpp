// Parity with transformers without Python: tests/convert/fixtures/<kind> hold tiny random DeepseekV3ForCausalLM
// checkpoints (config.json + model.safetensors, in fp32, bf16 and the FP8 block format) with token sequences and
// the logits transformers computed (expected.safetensors), all made by validation/hf_parity.py. Each is imported on
// the ranks of the test, evaluated, compared (KL of the softmaxes < 1e-9 per position), exported again in its own
// format and compared tensor by tensor with the original: bit-identical.
#include "dsv3/hf/hf_config.hpp"
#include "dsv3/hf/hf_export.hpp"
#include "dsv3/hf/hf_import.hpp"
#include "dsv3/io/safetensors.hpp"
#include "dsv3/io/safetensors_index.hpp"
#include "dsv3/train/evaluation.hpp"
#include "io/io_testing.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

using namespace dsv3;
using dsv3::testing::ScratchDirectory;

namespace {

const std::filesystem::path kFixtures = std::filesystem::path(DSV3_SOURCE_DIR) / "tests/convert/fixtures";

struct Fixture {
  const char* kind;
  hf::ExportDType dtype;
};

// max over positions of KL(softmax(expected) ‖ softmax(actual)), in f64.
double max_kl(const float* expected, const float* actual, std::int64_t positions, std::int64_t vocab) {
  double worst = 0;
  for (std::int64_t p = 0; p < positions; ++p) {
    const float* e = expected + p * vocab;
    const float* a = actual + p * vocab;
    double e_max = e[0], a_max = a[0];
    for (std::int64_t v = 0; v < vocab; ++v) {
      e_max = std::max<double>(e_max, e[v]);
      a_max = std::max<double>(a_max, a[v]);
    }
    double e_sum = 0, a_sum = 0;
    for (std::int64_t v = 0; v < vocab; ++v) {
      e_sum += std::exp(e[v] - e_max);
      a_sum += std::exp(a[v] - a_max);
    }
    double kl = 0;
    for (std::int64_t v = 0; v < vocab; ++v) {
      const double log_e = e[v] - e_max - std::log(e_sum);
      const double log_a = a[v] - a_max - std::log(a_sum);
      kl += std::exp(log_e) * (log_e - log_a);
    }
    worst = std::max(worst, kl);
  }
  return worst;
}

std::vector<float> as_floats(const io::SafetensorsFile& file, const io::SafetensorsTensor& tensor) {
  std::vector<float> values(static_cast<std::size_t>(tensor.numel()));
  const auto bytes = file.data(tensor);
  if (tensor.dtype == io::SafetensorsDType::F32) {
    std::memcpy(values.data(), bytes.data(), bytes.size());
  } else {
    REQUIRE(tensor.dtype == io::SafetensorsDType::BF16);
    for (std::size_t i = 0; i < values.size(); ++i) {
      bf16 x;
      std::memcpy(&x.bits, bytes.data() + 2 * i, 2);
      values[i] = bf16_to_f32(x);
    }
  }
  return values;
}

}  // namespace

TEST_CASE("HF fixtures: import, logits against transformers, bit-identical export") {
  for (const Fixture fixture : {Fixture{"qlora0_f32", hf::ExportDType::f32},
                                Fixture{"qlora_groups_f32", hf::ExportDType::f32},
                                Fixture{"qlora_groups_bf16", hf::ExportDType::bf16},
                                Fixture{"qlora_groups_fp8", hf::ExportDType::fp8}}) {
    CAPTURE(fixture.kind);
    ScratchDirectory dir(std::string("hf-fixture-") + fixture.kind);
    const std::filesystem::path source = kFixtures / fixture.kind;
    hf::ImportOptions import;
    import.hf_dir = source;
    import.output = dir / "model.h5";
    import.progress = false;
    import.chunk_bytes = 1024;  // many chunks, FP8 ones of whole 128-row blocks
    hf::import_hf_checkpoint(import, MPI_COMM_WORLD);

    const io::SafetensorsFile expected = io::SafetensorsFile::open(source / "expected.safetensors");
    const io::SafetensorsTensor& tokens = *expected.find("tokens");
    const io::SafetensorsTensor& logits = *expected.find("logits");
    std::vector<std::vector<std::int32_t>> sequences(static_cast<std::size_t>(tokens.shape[0]));
    for (std::size_t b = 0; b < sequences.size(); ++b) {
      sequences[b].resize(static_cast<std::size_t>(tokens.shape[1]));
      std::memcpy(sequences[b].data(), expected.data(tokens).data() + b * sequences[b].size() * 4,
                  sequences[b].size() * 4);
    }
    const auto model = train::load_model(import.output, tokens.shape[1]);
    const train::Evaluation evaluation = train::evaluate(*model, sequences);
    const std::vector<float> reference = as_floats(expected, logits);
    const std::int64_t vocab = logits.shape[2];
    const double kl = max_kl(reference.data(), evaluation.logits.data<float>(), evaluation.logits.numel() / vocab, vocab);
    double max_abs = 0;
    for (std::size_t i = 0; i < reference.size(); ++i)
      max_abs = std::max<double>(max_abs, std::abs(reference[i] - evaluation.logits.data<float>()[i]));
    MESSAGE(std::string(fixture.kind), ": KL ", kl, ", max |logit difference| ", max_abs);
    CHECK(kl < 1e-9);
    CHECK(max_abs < 1e-4);

    hf::ExportOptions exported;
    exported.checkpoint = import.output;
    exported.output = dir / "export";
    exported.dtype = fixture.dtype;
    exported.shard_bytes = 20000;  // several shards
    exported.progress = false;
    exported.chunk_bytes = 1024;
    hf::export_hf_checkpoint(exported, MPI_COMM_WORLD);
    const io::SafetensorsFile original = io::SafetensorsFile::open(source / "model.safetensors");
    const io::SafetensorsCheckpoint back = io::SafetensorsCheckpoint::open(exported.output);
    CHECK(back.names().size() == original.tensors().size());
    for (const io::SafetensorsTensor& tensor : original.tensors()) {
      CAPTURE(tensor.name);
      const auto [file, copy] = back.find(tensor.name);
      CHECK(copy->shape == tensor.shape);
      if (copy->dtype == tensor.dtype) {
        const auto a = original.data(tensor), b = file->data(*copy);
        CHECK(std::memcmp(a.data(), b.data(), a.size()) == 0);
      } else {
        // transformers saves a bf16 model's e_score_correction_bias in bf16; dsv3 keeps it F32, as the release.
        CHECK(tensor.name.ends_with("e_score_correction_bias"));
        CHECK(as_floats(original, tensor) == as_floats(*file, *copy));
      }
    }
    const hf::HfConfig config = hf::read_hf_config(exported.output / "config.json");
    CHECK(config.fp8 == (fixture.dtype == hf::ExportDType::fp8));
    CHECK(config.args.q_lora_rank == model->args().q_lora_rank);
  }
}
