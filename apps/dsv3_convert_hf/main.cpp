// dsv3_convert_hf: Hugging Face checkpoints in and out, in parallel over MPI ranks.
//   mpiexec -n 4 dsv3_convert_hf import --hf-dir DIR --output model.h5 [--dtype float32|bfloat16]
//   mpiexec -n 4 dsv3_convert_hf export --checkpoint model.h5 --output DIR [--dtype bf16|fp8|f32] [--shard-size 5GB]
// The imported checkpoint starts a run through `checkpoint.initial_load_path`; an export loads in transformers.
#include "dsv3/core/error.hpp"
#include "dsv3/hf/hf_export.hpp"
#include "dsv3/hf/hf_import.hpp"

#include <boost/program_options.hpp>
#include <fmt/format.h>
#include <mpi.h>

#include <cmath>
#include <iostream>
#include <string>
#include <vector>

namespace po = boost::program_options;
using namespace dsv3;

namespace {

constexpr std::string_view kUsage =
    "usage: [mpiexec -n N] dsv3_convert_hf COMMAND [options]\n"
    "commands:\n"
    "  import   Hugging Face checkpoint (config.json + safetensors, BF16/F32/FP8) -> model-only dsv3 checkpoint\n"
    "  export   dsv3 checkpoint -> Hugging Face checkpoint (safetensors shards + index + config.json)\n"
    "Ranks split the tensors; each reads only its own. `COMMAND --help` lists the options.\n";

// "5GB", "500MB", "1.5GiB", "4096": bytes.
std::uint64_t parse_size(const std::string& text) {
  std::size_t end = 0;
  double value = 0;
  try {
    value = std::stod(text, &end);
  } catch (const std::exception&) {
    fail("--shard-size {}: expected a size such as 5GB, 500MB or 1000000", text);
  }
  const std::string unit = text.substr(end);
  double scale = 0;
  for (const auto& [name, factor] : std::vector<std::pair<std::string, double>>{
           {"", 1}, {"B", 1}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
           {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}}) {
    if (unit == name) scale = factor;
  }
  DSV3_CHECK(scale > 0 && value > 0, "--shard-size {}: expected a positive size such as 5GB, 500MB or 1000000", text);
  return static_cast<std::uint64_t>(std::llround(value * scale));
}

bool parse(const std::vector<std::string>& arguments, po::options_description& options, const std::string& command,
           int rank) {
  options.add_options()("help,h", "this help");
  po::variables_map values;
  po::store(po::command_line_parser(arguments).options(options).run(), values);
  if (values.count("help")) {
    if (rank == 0) std::cout << "usage: dsv3_convert_hf " << command << " [options]\n" << options;
    return false;
  }
  po::notify(values);
  return true;
}

int import_command(const std::vector<std::string>& arguments, int rank) {
  hf::ImportOptions import;
  std::string hf_dir, output, dtype = "float32", mask = "causal";
  bool quiet = false;
  po::options_description options("import: Hugging Face checkpoint -> dsv3 checkpoint");
  options.add_options()("hf-dir", po::value(&hf_dir)->required(),
                        "folder with config.json and model.safetensors[.index.json] + shards")(
      "output,o", po::value(&output)->required(), "the dsv3 checkpoint to write (.h5)")(
      "dtype", po::value(&dtype)->default_value(dtype), "stored parameters: float32 or bfloat16")(
      "mask", po::value(&mask)->default_value(mask),
      "attention mask recorded in the model args: causal (as transformers) or document_causal")(
      "quiet,q", po::bool_switch(&quiet), "no progress report");
  if (!parse(arguments, options, "import", rank)) return 0;
  DSV3_CHECK(dtype == "float32" || dtype == "bfloat16", "--dtype {}: expected float32 or bfloat16", dtype);
  DSV3_CHECK(mask == "causal" || mask == "document_causal", "--mask {}: expected causal or document_causal", mask);
  import.hf_dir = hf_dir;
  import.output = output;
  import.dtype = dtype == "float32" ? DType::f32 : DType::bf16;
  import.mask = mask == "causal" ? model::MaskType::causal : model::MaskType::document_causal;
  import.progress = !quiet;
  hf::import_hf_checkpoint(import, MPI_COMM_WORLD);
  return 0;
}

int export_command(const std::vector<std::string>& arguments, int rank) {
  hf::ExportOptions exported;
  std::string checkpoint, output, dtype = "bf16", shard_size = "5GB";
  bool quiet = false;
  po::options_description options("export: dsv3 checkpoint -> Hugging Face checkpoint");
  options.add_options()("checkpoint", po::value(&checkpoint)->required(), "the dsv3 checkpoint (.h5) to read")(
      "output,o", po::value(&output)->required(), "the folder to write (created when missing)")(
      "dtype", po::value(&dtype)->default_value(dtype),
      "bf16, f32, or fp8 (F8_E4M3 projections with 128x128 weight_scale_inv, the rest BF16)")(
      "shard-size", po::value(&shard_size)->default_value(shard_size), "largest shard, e.g. 5GB or 500MB")(
      "quiet,q", po::bool_switch(&quiet), "no progress report");
  if (!parse(arguments, options, "export", rank)) return 0;
  DSV3_CHECK(dtype == "bf16" || dtype == "f32" || dtype == "fp8", "--dtype {}: expected bf16, f32 or fp8", dtype);
  exported.checkpoint = checkpoint;
  exported.output = output;
  exported.dtype = dtype == "bf16" ? hf::ExportDType::bf16 : dtype == "f32" ? hf::ExportDType::f32 : hf::ExportDType::fp8;
  exported.shard_bytes = parse_size(shard_size);
  exported.progress = !quiet;
  hf::export_hf_checkpoint(exported, MPI_COMM_WORLD);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int status = 0;
  const std::string command = argc > 1 ? argv[1] : "";
  const std::vector<std::string> arguments(argv + std::min(argc, 2), argv + argc);
  try {
    if (command == "import") {
      status = import_command(arguments, rank);
    } else if (command == "export") {
      status = export_command(arguments, rank);
    } else {
      if (rank == 0) std::cerr << kUsage;
      status = command == "--help" || command == "-h" ? 0 : 2;
    }
  } catch (const std::exception& error) {
    // The library agrees on failures before collective steps: every rank has the same error, one prints it.
    if (rank == 0) fmt::print(stderr, "dsv3_convert_hf {}: error: {}\n", command, error.what());
    status = 1;
  }
  MPI_Finalize();
  return status;
}
