// The image service: pulls images from registries into a content-addressed,
// layered store under <crisd.root>/images, and answers what the CRI
// ImageService asks (list, status, remove, file system use). The store has
// one owner, this class; the runtime reaches layers through rootfs.hpp.
//
// Layout of the store (every step of a pull is staged in tmp/ and renamed
// into place, so a crash leaves nothing half-written visible; startup removes
// what is left in tmp/ and layers no image refers to):
//   blobs/sha256/<hex>       manifests, indexes and configs, verified
//   layers/<hex>/diff/       a layer unpacked in overlay format (<hex>: its blob digest)
//   layers/<hex>/link        the layer's short name NAME, with l/NAME -> ../layers/<hex>/diff
//   images/<id-hex>.json     an image record: tags, digests, layers (written atomically)
//   tmp/                     staging
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "image/manifest.hpp"

namespace crisd::image {

struct Options {
    std::string root;  // <crisd.root>/images
    std::string registries_conf = "/etc/containers/registries.conf";
    std::string global_auth_file;  // empty: the standard auth files
    std::string signature_policy = "/etc/containers/policy.json";  // missing file: allow all
    std::chrono::seconds pull_progress_timeout{60};
    std::chrono::seconds connect_timeout{30};
    int max_parallel_downloads = 3;
    std::chrono::seconds progress_log_interval{5};
};

// The credentials of a CRI AuthConfig.
struct PullAuth {
    std::string username;
    std::string password;
    std::string auth;  // base64 of user:password
    std::string identity_token;
    std::string registry_token;
    bool empty() const {
        return username.empty() && password.empty() && auth.empty() && identity_token.empty() &&
               registry_token.empty();
    }
};

struct ImageInfo {
    std::string id;  // "sha256:<config digest hex>"
    std::vector<std::string> repo_tags;
    std::vector<std::string> repo_digests;
    // status(ref) only: the repo digest of the repository `ref` named (else
    // the first repo digest, else empty): a container's image_ref.
    std::string ref_digest;
    std::int64_t size = 0;  // bytes of the layers as pulled (compressed) plus the config
    std::optional<std::int64_t> uid;  // from the config's User when numeric
    std::string username;             // from the config's User when a name
    std::string manifest_digest;
    std::string config_json;  // ImageStatus only (empty from list())
    std::vector<std::string> layers;  // layer blob digests, lowest first
    std::int64_t pulled_at_ns = 0;
};

struct FsUsage {
    std::string mountpoint;
    std::uint64_t bytes = 0;
    std::uint64_t inodes = 0;
    std::int64_t timestamp_ns = 0;
};

class Store;

class Images {
public:
    // Opens (creating) the store and cleans what a crash left behind.
    explicit Images(Options options);
    ~Images();
    Images(const Images&) = delete;
    Images& operator=(const Images&) = delete;

    // Pulls `ref` (a name, name:tag or name@digest; short names through
    // registries.conf) and returns the image id. Two pulls of the same
    // reference at once do the work once.
    std::string pull(const std::string& ref, const PullAuth& auth = {});

    // Every image, or the one `ref` names (empty when there is none).
    std::vector<ImageInfo> list(const std::string& ref = "") const;
    // The image `ref` names (id, id prefix, name:tag, name@digest), if any.
    std::optional<ImageInfo> status(const std::string& ref) const;
    // Removes the image `ref` names: untags only when `ref` is one tag of
    // several, else the whole image and its unreferenced layers. Unknown
    // images are not an error (CRI RemoveImage is idempotent).
    // FailedPrecondition while a container uses it.
    void remove(const std::string& ref);

    FsUsage usage() const;
    std::size_t count() const;
    const Options& options() const;

    // Marks the image `ref` names as used by `user` (a container id) until
    // released: RemoveImage refuses it meanwhile. Returns the image id;
    // NotFound for an unknown image.
    std::string acquire(const std::string& ref, const std::string& user);
    void release(const std::string& image_id, const std::string& user);

    // The parsed config of the image `ref` names (Env, Entrypoint, Cmd,
    // WorkingDir, User, StopSignal, ...), for the container's OCI spec;
    // NotFound for an unknown image.
    ImageConfig config(const std::string& ref) const;

    // The image's layers for an overlay mount, top first, as paths relative
    // to options().root ("l/ABCDEFGHIJ"); NotFound for an unknown image.
    std::vector<std::string> lower_dirs(const std::string& image_id) const;

private:
    std::unique_ptr<Store> store_;
};

}  // namespace crisd::image
