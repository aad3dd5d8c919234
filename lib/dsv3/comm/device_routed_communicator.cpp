#include "dsv3/comm/device_routed_communicator.hpp"

namespace dsv3::comm {

namespace {

class DeviceRoutedCommunicator final : public Communicator {
 public:
  DeviceRoutedCommunicator(std::unique_ptr<Communicator> host, std::unique_ptr<Communicator> device)
      : host_(std::move(host)), device_(std::move(device)) {}

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  std::string name() const override { return host_->name(); }

  Request all_reduce(const Tensor& data, ReduceOp op) override { return route(data).all_reduce(data, op); }
  Request reduce_scatter(const Tensor& output, const Tensor& input, ReduceOp op) override {
    return route(output).reduce_scatter(output, input, op);
  }
  Request all_gather(const Tensor& output, const Tensor& input) override {
    return route(output).all_gather(output, input);
  }
  Request all_to_all_v(const Tensor& output, std::span<const std::int64_t> recv_counts, const Tensor& input,
                       std::span<const std::int64_t> send_counts) override {
    return route(output).all_to_all_v(output, recv_counts, input, send_counts);
  }
  Request broadcast(const Tensor& data, int root) override { return route(data).broadcast(data, root); }
  Request send(const Tensor& data, int peer, int tag) override { return route(data).send(data, peer, tag); }
  Request recv(const Tensor& data, int peer, int tag) override { return route(data).recv(data, peer, tag); }
  void barrier() override { host_->barrier(); }

 private:
  // The implementation for the call's tensors; the implementations check that all of them share its device.
  Communicator& route(const Tensor& tensor) { return tensor.device() == Device::cuda ? *device_ : *host_; }

  std::unique_ptr<Communicator> host_;
  std::unique_ptr<Communicator> device_;
};

}  // namespace

std::unique_ptr<Communicator> make_device_routed_communicator(std::unique_ptr<Communicator> host,
                                                              std::unique_ptr<Communicator> device) {
  return std::make_unique<DeviceRoutedCommunicator>(std::move(host), std::move(device));
}

}  // namespace dsv3::comm
