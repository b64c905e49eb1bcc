// CRI ImageService handlers.
#include "cri_api.hpp"
#include "cri/call.hpp"
#include "cri/cri.hpp"

namespace crisd::cri {
namespace {

namespace v1 = ::runtime::v1;
using grpc::ServerContext;


#define CRISD_UNIMPLEMENTED(Rpc)                                                       \
    grpc::Status Rpc(ServerContext*, const v1::Rpc##Request*, v1::Rpc##Response*) override { \
        return call(#Rpc, [] { unimplemented(#Rpc); });                                \
    }

#define CRISD_UNIMPLEMENTED_STREAM(Rpc)                                                  \
    grpc::Status Rpc(ServerContext*, const v1::Rpc##Request*,                                  \
               grpc::ServerWriter<v1::Rpc##Response>*) override {                        \
        return call(#Rpc, [] { unimplemented(#Rpc); });                                  \
    }

class ImageService final : public v1::ImageService::Service {
public:
    explicit ImageService(const Backends& b) : b_(b) {}

    CRISD_UNIMPLEMENTED(ListImages)
    CRISD_UNIMPLEMENTED(ImageStatus)
    CRISD_UNIMPLEMENTED(PullImage)
    CRISD_UNIMPLEMENTED(RemoveImage)
    CRISD_UNIMPLEMENTED(ImageFsInfo)

    CRISD_UNIMPLEMENTED_STREAM(StreamImages)

private:
    [[maybe_unused]] const Backends& b_;
};

}  // namespace

std::unique_ptr<grpc::Service> make_image_service(const Backends& backends) {
    return std::make_unique<ImageService>(backends);
}

}  // namespace crisd::cri
