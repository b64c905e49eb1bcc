// The CNI protocol (spec 1.0.0, and 0.3.x/0.4.0 configs): network config
// lists, plugin lookup, and one plugin invocation (environment, config on
// stdin, result or error on stdout, a deadline).
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace crisd::network::cni {

// A network config list (.conflist), or a single .conf turned into a list of one.
struct ConfigList {
    std::string file;  // where it was read from ("" for a built-in one)
    std::string name;
    std::string cni_version;
    bool disable_check = false;
    nlohmann::json plugins = nlohmann::json::array();  // each plugin's own config object
    nlohmann::json raw;                                 // the list as loaded, for the cache

    // Parses and validates a .conflist, or a .conf when `single` is true.
    static ConfigList parse(const std::string& text, const std::string& file, bool single);
    static ConfigList from_json(const nlohmann::json& raw, const std::string& file);
};

// Versions of the spec crisd can drive.
bool supported_version(const std::string& version);
// CHECK exists from 0.4.0 on.
bool version_has_check(const std::string& version);

// Loads the config lists in `dir` (.conflist, .conf, .json) in lexical order.
// Invalid files are skipped and reported in `problems` ("FILE: why").
std::vector<ConfigList> load_dir(const std::string& dir, std::vector<std::string>& problems);

// The first plugin binary named `type` in `dirs`, or "" when there is none.
std::string find_plugin(const std::string& type, const std::vector<std::string>& dirs);

// What the runtime knows about one attachment.
struct Attachment {
    std::string container_id;  // the pod sandbox id
    std::string netns;         // path of the network namespace file
    std::string ifname = "eth0";
    std::vector<std::pair<std::string, std::string>> args;  // CNI_ARGS
    nlohmann::json capability_args = nlohmann::json::object();  // portMappings, bandwidth, ...
};

struct Invocation {
    std::string command;  // ADD, DEL, CHECK
    std::vector<std::string> plugin_dirs;
    std::chrono::milliseconds timeout{60000};
};

// Runs one plugin of `list` (config `plugin`) for `att`. `prev_result` is
// injected as prevResult when not null. Returns the plugin's result (null for
// DEL/CHECK that print nothing). Throws crisd::Error with the plugin's own
// error message (code, msg, details) on failure or timeout.
nlohmann::json invoke(const ConfigList& list, const nlohmann::json& plugin, const Attachment& att,
                      const Invocation& inv, const nlohmann::json& prev_result);

// The plugin config as sent on stdin: name, cniVersion, runtimeConfig for
// the capabilities the plugin declares, prevResult.
nlohmann::json plugin_stdin(const ConfigList& list, const nlohmann::json& plugin,
                            const Attachment& att, const nlohmann::json& prev_result);

// The IP addresses (without prefix length) of a result, in its order.
std::vector<std::string> result_ips(const nlohmann::json& result);

}  // namespace crisd::network::cni
