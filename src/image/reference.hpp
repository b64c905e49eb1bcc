// Image references as the container ecosystem spells them:
//   busybox                    -> docker.io/library/busybox:latest
//   quay.io/a/b:v1             -> quay.io/a/b:v1
//   127.0.0.1:5000/busybox@sha256:...
#pragma once

#include <string>
#include <string_view>

namespace crisd::image {

struct Reference {
    std::string domain;  // "docker.io", "127.0.0.1:5000"; empty for a short name
    std::string path;    // "library/busybox"
    std::string tag;     // empty when none was given
    std::string digest;  // "sha256:..." or empty

    bool qualified() const { return !domain.empty(); }
    std::string name() const { return domain.empty() ? path : domain + "/" + path; }
    // name[:tag][@digest]
    std::string str() const;
    // name:tag (empty when there is no tag)
    std::string tagged() const { return tag.empty() ? "" : name() + ":" + tag; }
    // name@digest (empty when there is no digest)
    std::string digested() const { return digest.empty() ? "" : name() + "@" + digest; }
};

inline constexpr const char* kDefaultDomain = "docker.io";

// Parses a reference without applying defaults. Throws InvalidArgument for a
// malformed one (upper case in the path, bad tag, bad digest, empty).
Reference parse_reference(std::string_view text);

// The reference under `domain`: docker.io names of one component get "library/".
// Leaves a qualified reference as it is (but maps index.docker.io to docker.io).
Reference qualify(Reference ref, const std::string& domain);

// parse + qualify with docker.io + ":latest" when neither tag nor digest is given.
Reference normalize_reference(std::string_view text);

// Adds ":latest" when the reference has neither a tag nor a digest.
Reference with_default_tag(Reference ref);

}  // namespace crisd::image
