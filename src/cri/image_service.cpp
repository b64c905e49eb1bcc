// CRI ImageService handlers: translate and validate, then call image::Images.
#include <nlohmann/json.hpp>

#include "cri_api.hpp"
#include "common/error.hpp"
#include "cri/call.hpp"
#include "cri/cri.hpp"
#include "image/image.hpp"
#include "image/rootfs.hpp"

namespace crisd::cri {
namespace {

namespace v1 = ::runtime::v1;
using grpc::ServerContext;

void to_cri(const image::ImageInfo& i, v1::Image* out) {
    out->set_id(i.id);
    for (const auto& t : i.repo_tags) out->add_repo_tags(t);
    for (const auto& d : i.repo_digests) out->add_repo_digests(d);
    out->set_size(static_cast<std::uint64_t>(i.size));
    if (i.uid) out->mutable_uid()->set_value(*i.uid);
    out->set_username(i.username);
    out->mutable_spec()->set_image(i.id);
}

void to_cri(const image::FsUsage& u, v1::FilesystemUsage* out) {
    out->set_timestamp(u.timestamp_ns);
    out->mutable_fs_id()->set_mountpoint(u.mountpoint);
    out->mutable_used_bytes()->set_value(u.bytes);
    out->mutable_inodes_used()->set_value(u.inodes);
}

const std::string& image_name(const v1::ImageSpec& spec, const char* rpc) {
    if (spec.image().empty()) throw Error(Code::InvalidArgument, std::string(rpc) + ": image is required");
    return spec.image();
}

class ImageService final : public v1::ImageService::Service {
public:
    explicit ImageService(const Backends& b) : b_(b) {}

    grpc::Status ListImages(ServerContext*, const v1::ListImagesRequest* req, v1::ListImagesResponse* resp) override {
        return call("ListImages", [&] {
            const std::string filter = req->has_filter() ? req->filter().image().image() : "";
            for (const auto& i : images().list(filter)) to_cri(i, resp->add_images());
        });
    }

    grpc::Status ImageStatus(ServerContext*, const v1::ImageStatusRequest* req, v1::ImageStatusResponse* resp) override {
        return call("ImageStatus", [&] {
            const auto& name = image_name(req->image(), "ImageStatus");
            const auto info = images().status(name);
            if (!info) return;  // CRI: an unknown image is an empty response, not an error
            to_cri(*info, resp->mutable_image());
            if (req->verbose()) {
                nlohmann::json j = {{"id", info->id},
                                    {"manifestDigest", info->manifest_digest},
                                    {"layers", info->layers},
                                    {"pulledAt", info->pulled_at_ns}};
                try {
                    j["imageSpec"] = nlohmann::json::parse(info->config_json);
                } catch (const std::exception&) {
                    j["imageSpec"] = nullptr;
                }
                (*resp->mutable_info())["info"] = j.dump();
            }
        });
    }

    grpc::Status PullImage(ServerContext*, const v1::PullImageRequest* req, v1::PullImageResponse* resp) override {
        return call("PullImage", [&] {
            const auto& name = image_name(req->image(), "PullImage");
            image::PullAuth auth;
            if (req->has_auth()) {
                const auto& a = req->auth();
                auth = {a.username(), a.password(), a.auth(), a.identity_token(), a.registry_token()};
            }
            resp->set_image_ref(images().pull(name, auth));
        });
    }

    grpc::Status RemoveImage(ServerContext*, const v1::RemoveImageRequest* req, v1::RemoveImageResponse*) override {
        return call("RemoveImage", [&] { images().remove(image_name(req->image(), "RemoveImage")); });
    }

    grpc::Status ImageFsInfo(ServerContext*, const v1::ImageFsInfoRequest*, v1::ImageFsInfoResponse* resp) override {
        return call("ImageFsInfo", [&] {
            to_cri(images().usage(), resp->add_image_filesystems());
            if (b_.rootfs) to_cri(b_.rootfs->usage(), resp->add_container_filesystems());
        });
    }

    grpc::Status StreamImages(ServerContext*, const v1::StreamImagesRequest*,
                              grpc::ServerWriter<v1::StreamImagesResponse>*) override {
        return call("StreamImages", [] {
            throw Error(Code::Unimplemented, "StreamImages is not implemented by crisd; use ListImages");
        });
    }

private:
    image::Images& images() const {
        if (!b_.images) throw Error(Code::Unavailable, "the image service is not available");
        return *b_.images;
    }

    const Backends& b_;
};

}  // namespace

std::unique_ptr<grpc::Service> make_image_service(const Backends& backends) {
    return std::make_unique<ImageService>(backends);
}

}  // namespace crisd::cri
