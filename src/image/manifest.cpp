#include "image/manifest.hpp"

#include <sys/utsname.h>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "image/digest.hpp"

namespace crisd::image {
namespace {

using json = nlohmann::json;

Error malformed(const std::string& why) { return Error(Code::InvalidArgument, "malformed manifest: " + why); }

std::string get_str(const json& j, const char* key) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return "";
    if (!it->is_string()) throw malformed(std::string(key) + " is not a string");
    return it->get<std::string>();
}

Descriptor descriptor(const json& j, const std::string& where) {
    if (!j.is_object()) throw malformed(where + " is not an object");
    Descriptor d;
    d.media_type = get_str(j, "mediaType");
    d.digest = get_str(j, "digest");
    if (!is_sha256_digest(d.digest)) throw malformed(where + ": bad or unsupported digest \"" + d.digest + "\"");
    const auto size = j.find("size");
    if (size == j.end() || !size->is_number_integer() || size->get<std::int64_t>() < 0)
        throw malformed(where + ": size missing or invalid");
    d.size = size->get<std::int64_t>();
    if (const auto p = j.find("platform"); p != j.end() && p->is_object()) {
        d.platform.os = get_str(*p, "os");
        d.platform.architecture = get_str(*p, "architecture");
        d.platform.variant = get_str(*p, "variant");
    }
    return d;
}

}  // namespace

const char* manifest_accept() {
    return "application/vnd.oci.image.index.v1+json, "
           "application/vnd.docker.distribution.manifest.list.v2+json, "
           "application/vnd.oci.image.manifest.v1+json, "
           "application/vnd.docker.distribution.manifest.v2+json";
}

Platform node_platform() {
    struct utsname u {};
    ::uname(&u);
    const std::string m = u.machine;
    Platform p{"linux", m, ""};
    if (m == "x86_64") p.architecture = "amd64";
    else if (m == "aarch64") { p.architecture = "arm64"; p.variant = "v8"; }
    else if (m == "i686" || m == "i386") p.architecture = "386";
    else if (m.starts_with("armv7")) { p.architecture = "arm"; p.variant = "v7"; }
    else if (m == "ppc64le") p.architecture = "ppc64le";
    else if (m == "s390x") p.architecture = "s390x";
    else if (m == "riscv64") p.architecture = "riscv64";
    return p;
}

Compression layer_compression(const std::string& mt) {
    if (mt == "application/vnd.docker.image.rootfs.diff.tar.gzip" ||
        mt == "application/vnd.oci.image.layer.v1.tar+gzip" ||
        mt == "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")
        return Compression::Gzip;
    if (mt == "application/vnd.oci.image.layer.v1.tar+zstd" ||
        mt == "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")
        return Compression::Zstd;
    if (mt == "application/vnd.oci.image.layer.v1.tar" ||
        mt == "application/vnd.oci.image.layer.nondistributable.v1.tar" ||
        mt == "application/vnd.docker.image.rootfs.diff.tar")
        return Compression::None;
    throw Error(Code::InvalidArgument, "unsupported layer media type \"" + mt + "\"");
}

Manifest parse_manifest(const std::string& body, const std::string& content_type) {
    json j;
    try {
        j = json::parse(body);
    } catch (const json::exception& e) {
        throw malformed(std::string("not JSON: ") + e.what());
    }
    if (!j.is_object()) throw malformed("not a JSON object");
    Manifest m;
    m.media_type = get_str(j, "mediaType");
    if (m.media_type.empty()) {
        std::string ct = content_type.substr(0, content_type.find(';'));
        if (ct == media::kDockerManifest || ct == media::kDockerList || ct == media::kOciManifest ||
            ct == media::kOciIndex)
            m.media_type = ct;
        else if (j.contains("manifests"))
            m.media_type = media::kOciIndex;
        else if (j.contains("layers"))
            m.media_type = media::kOciManifest;
    }
    const auto sv = j.find("schemaVersion");
    if (sv == j.end() || !sv->is_number_integer() || sv->get<int>() != 2) {
        if (sv != j.end() && sv->is_number_integer() && sv->get<int>() == 1)
            throw Error(Code::InvalidArgument, "Docker schema 1 manifests are not supported");
        throw malformed("schemaVersion is not 2");
    }
    if (m.media_type == media::kDockerList || m.media_type == media::kOciIndex) {
        m.is_index = true;
        const auto ms = j.find("manifests");
        if (ms == j.end() || !ms->is_array()) throw malformed("index without a manifests array");
        int i = 0;
        for (const auto& e : *ms) m.manifests.push_back(descriptor(e, "manifests[" + std::to_string(i++) + "]"));
        return m;
    }
    if (m.media_type != media::kDockerManifest && m.media_type != media::kOciManifest)
        throw Error(Code::InvalidArgument, "unsupported manifest media type \"" + m.media_type + "\"");
    const auto cfg = j.find("config");
    if (cfg == j.end()) throw malformed("no config");
    m.config = descriptor(*cfg, "config");
    const auto ls = j.find("layers");
    if (ls == j.end() || !ls->is_array()) throw malformed("no layers array");
    int i = 0;
    for (const auto& e : *ls) {
        auto d = descriptor(e, "layers[" + std::to_string(i++) + "]");
        layer_compression(d.media_type);  // refuses what cannot be unpacked
        m.layers.push_back(std::move(d));
    }
    return m;
}

const Descriptor& select_platform(const Manifest& index, const Platform& want, const std::string& what) {
    const Descriptor* loose = nullptr;
    for (const auto& d : index.manifests) {
        if (d.platform.os != want.os || d.platform.architecture != want.architecture) continue;
        if (d.platform.variant == want.variant) return d;
        // arm64 images often carry no variant (v8 implied); amd64 ones may say v1.
        if (!loose && (d.platform.variant.empty() || want.variant.empty())) loose = &d;
    }
    if (loose) return *loose;
    std::string have;
    for (const auto& d : index.manifests) have += (have.empty() ? "" : ", ") + d.platform.str();
    throw Error(Code::NotFound, "no image for " + want.str() + " in " + what +
                                    " (it has: " + (have.empty() ? "nothing" : have) + ")");
}

ImageConfig parse_image_config(const std::string& body) {
    json j;
    try {
        j = json::parse(body);
    } catch (const json::exception& e) {
        throw Error(Code::InvalidArgument, std::string("malformed image config: not JSON: ") + e.what());
    }
    if (!j.is_object()) throw Error(Code::InvalidArgument, "malformed image config: not an object");
    ImageConfig c;
    try {
        c.os = j.value("os", "");
        c.architecture = j.value("architecture", "");
        if (const auto it = j.find("config"); it != j.end() && it->is_object()) {
            const auto& cc = *it;
            auto str = [&](const char* k, std::string& out) {
                if (const auto v = cc.find(k); v != cc.end() && v->is_string()) out = v->get<std::string>();
            };
            auto list = [&](const char* k, std::vector<std::string>& out) {
                if (const auto v = cc.find(k); v != cc.end() && v->is_array())
                    for (const auto& e : *v) out.push_back(e.get<std::string>());
            };
            auto keys = [&](const char* k, std::vector<std::string>& out) {
                if (const auto v = cc.find(k); v != cc.end() && v->is_object())
                    for (auto e = v->begin(); e != v->end(); ++e) out.push_back(e.key());
            };
            str("User", c.user);
            str("WorkingDir", c.working_dir);
            str("StopSignal", c.stop_signal);
            list("Env", c.env);
            list("Entrypoint", c.entrypoint);
            list("Cmd", c.cmd);
            keys("Volumes", c.volumes);
            keys("ExposedPorts", c.exposed_ports);
            if (const auto v = cc.find("Labels"); v != cc.end() && v->is_object())
                for (auto e = v->begin(); e != v->end(); ++e)
                    if (e->is_string()) c.labels[e.key()] = e->get<std::string>();
        }
        if (const auto r = j.find("rootfs"); r != j.end() && r->is_object())
            if (const auto d = r->find("diff_ids"); d != r->end() && d->is_array())
                for (const auto& id : *d) c.diff_ids.push_back(id.get<std::string>());
    } catch (const json::exception& e) {
        throw Error(Code::InvalidArgument, std::string("malformed image config: ") + e.what());
    }
    return c;
}

}  // namespace crisd::image
