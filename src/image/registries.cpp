#include "image/registries.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <toml++/toml.h>

#include "common/error.hpp"

namespace crisd::image {
namespace {

Error conf_error(const std::string& origin, const std::string& msg) {
    return Error(Code::InvalidArgument, origin + ": " + msg);
}

std::string str_key(const toml::table& t, const char* key, const std::string& where,
                    const std::string& origin) {
    const auto* n = t.get(key);
    if (!n) return "";
    if (!n->is_string()) throw conf_error(origin, where + "." + key + ": expected a string");
    return *n->value<std::string>();
}

bool bool_key(const toml::table& t, const char* key, const std::string& where,
              const std::string& origin) {
    const auto* n = t.get(key);
    if (!n) return false;
    if (!n->is_boolean()) throw conf_error(origin, where + "." + key + ": expected a boolean");
    return *n->value<bool>();
}

// Does `prefix` match `name`? A plain prefix matches itself and anything
// below it ("a.com/x" matches "a.com/x/y", not "a.com/xy"); "*.a.com" matches
// any sub-domain of a.com.
bool prefix_matches(const std::string& prefix, const std::string& name) {
    if (prefix.starts_with("*.")) {
        const auto slash = name.find('/');
        const std::string host = name.substr(0, slash);
        const std::string suffix = prefix.substr(1);  // ".a.com"
        return host.size() > suffix.size() && host.ends_with(suffix);
    }
    if (name == prefix) return true;
    return name.size() > prefix.size() && name.starts_with(prefix) &&
           (name[prefix.size()] == '/' || name[prefix.size()] == ':' || name[prefix.size()] == '@');
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw_errno("reading " + path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Rewrites ref ("domain/path") with the matched prefix replaced by `location`.
Reference rewrite(const Reference& ref, const std::string& prefix, const std::string& location) {
    std::string name = ref.name();
    if (prefix.starts_with("*.")) {
        // A wildcard prefix only matches the host; the location replaces nothing.
        return ref;
    }
    std::string rest = name.substr(prefix.size());  // "" or "/more"
    Reference out = parse_reference(location + rest);
    out.tag = ref.tag;
    out.digest = ref.digest;
    return out;
}

}  // namespace

const Registry* RegistriesConf::find(const std::string& name) const {
    const Registry* best = nullptr;
    std::size_t best_len = 0;
    for (const auto& r : registries) {
        if (!prefix_matches(r.prefix, name)) continue;
        // A wildcard counts as shorter than any exact prefix of the same host.
        const std::size_t len = r.prefix.starts_with("*.") ? r.prefix.size() - 2 : r.prefix.size() + 1;
        if (!best || len > best_len) {
            best = &r;
            best_len = len;
        }
    }
    return best;
}

RegistriesConf parse_registries_conf(const std::string& text, const std::string& origin) {
    toml::table doc;
    try {
        doc = toml::parse(text, origin);
    } catch (const toml::parse_error& e) {
        std::ostringstream msg;
        msg << "line " << e.source().begin.line << ": " << e.description();
        throw conf_error(origin, msg.str());
    }
    RegistriesConf conf;
    if (const auto* u = doc.get("unqualified-search-registries")) {
        if (!u->is_array()) throw conf_error(origin, "unqualified-search-registries: expected an array");
        conf.unqualified_search_set = true;
        for (const auto& e : *u->as_array()) {
            if (!e.is_string())
                throw conf_error(origin, "unqualified-search-registries: expected strings");
            conf.unqualified_search.push_back(*e.value<std::string>());
        }
    }
    if (const auto* regs = doc.get("registry")) {
        if (!regs->is_array_of_tables()) throw conf_error(origin, "registry: expected [[registry]] tables");
        int i = 0;
        for (const auto& node : *regs->as_array()) {
            const auto& t = *node.as_table();
            const std::string where = "registry[" + std::to_string(i++) + "]";
            Registry r;
            r.prefix = str_key(t, "prefix", where, origin);
            r.location = str_key(t, "location", where, origin);
            r.insecure = bool_key(t, "insecure", where, origin);
            r.blocked = bool_key(t, "blocked", where, origin);
            r.mirror_by_digest_only = bool_key(t, "mirror-by-digest-only", where, origin);
            if (r.prefix.empty()) r.prefix = r.location;
            if (r.prefix.empty()) throw conf_error(origin, where + ": needs a prefix or a location");
            if (r.prefix.starts_with("*.") && !r.location.empty())
                throw conf_error(origin, where + ": a wildcard prefix cannot have a location");
            if (const auto* ms = t.get("mirror")) {
                if (!ms->is_array_of_tables())
                    throw conf_error(origin, where + ".mirror: expected [[registry.mirror]] tables");
                int j = 0;
                for (const auto& mn : *ms->as_array()) {
                    const auto& mt = *mn.as_table();
                    const std::string mwhere = where + ".mirror[" + std::to_string(j++) + "]";
                    Mirror m;
                    m.location = str_key(mt, "location", mwhere, origin);
                    m.insecure = bool_key(mt, "insecure", mwhere, origin);
                    const auto pfm = str_key(mt, "pull-from-mirror", mwhere, origin);
                    if (!pfm.empty()) m.pull_from_mirror = pfm;
                    if (m.location.empty()) throw conf_error(origin, mwhere + ": needs a location");
                    if (m.pull_from_mirror != "all" && m.pull_from_mirror != "digest-only" &&
                        m.pull_from_mirror != "tag-only")
                        throw conf_error(origin, mwhere + ".pull-from-mirror: must be all, digest-only or tag-only");
                    r.mirrors.push_back(std::move(m));
                }
            }
            conf.registries.push_back(std::move(r));
        }
    }
    return conf;
}

void merge_registries_conf(RegistriesConf& base, const RegistriesConf& over) {
    if (over.unqualified_search_set) {
        base.unqualified_search = over.unqualified_search;
        base.unqualified_search_set = true;
    }
    for (const auto& r : over.registries) {
        auto it = std::find_if(base.registries.begin(), base.registries.end(),
                               [&](const Registry& b) { return b.prefix == r.prefix; });
        if (it != base.registries.end())
            *it = r;
        else
            base.registries.push_back(r);
    }
}

RegistriesConf load_registries_conf(const std::string& path) {
    namespace fs = std::filesystem;
    RegistriesConf conf;
    std::error_code ec;
    if (fs::exists(path, ec)) conf = parse_registries_conf(read_text(path), path);
    const std::string dir = path + ".d";
    if (fs::is_directory(dir, ec)) {
        std::vector<std::string> files;
        for (const auto& e : fs::directory_iterator(dir, ec))
            if (e.path().extension() == ".conf") files.push_back(e.path().string());
        std::sort(files.begin(), files.end());
        for (const auto& f : files) merge_registries_conf(conf, parse_registries_conf(read_text(f), f));
    }
    return conf;
}

std::vector<Reference> resolve_short_name(const RegistriesConf& conf, const Reference& ref) {
    if (ref.qualified()) return {with_default_tag(qualify(ref, kDefaultDomain))};
    std::vector<Reference> out;
    const auto& search = conf.unqualified_search_set && !conf.unqualified_search.empty()
                             ? conf.unqualified_search
                             : std::vector<std::string>{kDefaultDomain};
    for (const auto& d : search) out.push_back(with_default_tag(qualify(ref, d)));
    return out;
}

std::vector<PullSource> pull_sources(const RegistriesConf& conf, const Reference& ref) {
    const Registry* r = conf.find(ref.name());
    if (!r) return {PullSource{ref, false, false}};
    if (r->blocked)
        throw Error(Code::PermissionDenied,
                    "registry \"" + r->prefix + "\" is blocked in registries.conf; refusing to pull " + ref.str());
    std::vector<PullSource> out;
    const bool by_digest = !ref.digest.empty();
    if (!(r->mirror_by_digest_only && !by_digest)) {
        for (const auto& m : r->mirrors) {
            if (m.pull_from_mirror == "digest-only" && !by_digest) continue;
            if (m.pull_from_mirror == "tag-only" && by_digest) continue;
            out.push_back(PullSource{rewrite(ref, r->prefix, m.location), m.insecure, true});
        }
    }
    const std::string location = r->location.empty() ? r->prefix : r->location;
    out.push_back(PullSource{rewrite(ref, r->prefix, location), r->insecure, false});
    return out;
}

}  // namespace crisd::image
