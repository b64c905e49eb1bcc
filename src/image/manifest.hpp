// OCI and Docker schema 2 manifests, image indexes / manifest lists, image
// configs: parsing, validation, and choosing this node's platform.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace crisd::image {

namespace media {
inline constexpr const char* kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr const char* kDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr const char* kOciIndex = "application/vnd.oci.image.index.v1+json";
}  // namespace media

// The Accept header for manifest requests.
const char* manifest_accept();

struct Platform {
    std::string os;
    std::string architecture;
    std::string variant;
    std::string str() const { return os + "/" + architecture + (variant.empty() ? "" : "/" + variant); }
};

// linux/<GOARCH of this machine> (x86_64 -> amd64, aarch64 -> arm64/v8, ...).
Platform node_platform();

struct Descriptor {
    std::string media_type;
    std::string digest;
    std::int64_t size = 0;
    Platform platform;  // index entries only
};

enum class Compression { None, Gzip, Zstd };

// The compression of a layer media type; throws InvalidArgument for one that
// is not a layer crisd can unpack (foreign layers, encrypted layers, ...).
Compression layer_compression(const std::string& media_type);

struct Manifest {
    bool is_index = false;
    std::string media_type;
    Descriptor config;              // manifests
    std::vector<Descriptor> layers;  // manifests
    std::vector<Descriptor> manifests;  // indexes
};

// Parses a manifest or an index. `content_type` (the HTTP header) is used
// when the document has no mediaType. Throws InvalidArgument when malformed.
Manifest parse_manifest(const std::string& body, const std::string& content_type = "");

// The index entry for `want` (variant matched loosely: arm64 accepts "" and
// "v8"); throws NotFound "no image for linux/amd64 in ..." when there is none.
const Descriptor& select_platform(const Manifest& index, const Platform& want,
                                  const std::string& what);

// What a container takes from its image (the "config" object of an OCI
// image config / Docker container config).
struct ImageConfig {
    std::string user;
    std::string os;
    std::string architecture;
    std::vector<std::string> diff_ids;
    std::vector<std::string> env;  // "KEY=value"
    std::vector<std::string> entrypoint;
    std::vector<std::string> cmd;
    std::string working_dir;
    std::string stop_signal;
    std::vector<std::string> volumes;
    std::vector<std::string> exposed_ports;
    std::map<std::string, std::string> labels;
};

// Parses the parts of an image config crisd needs; InvalidArgument when malformed.
ImageConfig parse_image_config(const std::string& body);

}  // namespace crisd::image
