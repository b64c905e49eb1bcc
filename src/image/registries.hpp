// containers-registries.conf(5), version 2: where a name is pulled from.
//   unqualified-search-registries = ["docker.io"]
//   [[registry]] prefix, location, insecure, blocked, mirror-by-digest-only
//   [[registry.mirror]] location, insecure, pull-from-mirror
// The file is read, then every *.conf in the drop-in directory beside it
// (registries.conf.d) in lexical order, as Podman and CRI-O do.
#pragma once

#include <string>
#include <vector>

#include "image/reference.hpp"

namespace crisd::image {

struct Mirror {
    std::string location;
    bool insecure = false;
    std::string pull_from_mirror = "all";  // all, digest-only, tag-only
};

struct Registry {
    std::string prefix;    // "example.com/foo", "*.example.com"; defaults to location
    std::string location;  // where to pull from instead ("" = the prefix itself)
    bool insecure = false;
    bool blocked = false;
    bool mirror_by_digest_only = false;
    std::vector<Mirror> mirrors;
};

struct RegistriesConf {
    std::vector<std::string> unqualified_search;
    bool unqualified_search_set = false;
    std::vector<Registry> registries;

    // The [[registry]] with the longest prefix that matches name ("domain/path"), or nullptr.
    const Registry* find(const std::string& name) const;
};

// Parses one file. Throws InvalidArgument naming `origin` for bad TOML or keys.
RegistriesConf parse_registries_conf(const std::string& text, const std::string& origin);

// Applies `over` on top of `base`: registries with the same prefix are
// replaced, new ones added; unqualified-search-registries replaced when set.
void merge_registries_conf(RegistriesConf& base, const RegistriesConf& over);

// Reads `path` (missing is fine: empty config) and `path`.d/*.conf.
RegistriesConf load_registries_conf(const std::string& path);

// One place to try a pull from: the reference rewritten to a mirror or the
// registry's location.
struct PullSource {
    Reference ref;
    bool insecure = false;
    bool mirror = false;
};

// The qualified references a possibly short name stands for, in the order to try.
std::vector<Reference> resolve_short_name(const RegistriesConf& conf, const Reference& ref);

// Where to pull a qualified reference from: its mirrors, then its location.
// Throws PermissionDenied when the registry is blocked.
std::vector<PullSource> pull_sources(const RegistriesConf& conf, const Reference& ref);

}  // namespace crisd::image
