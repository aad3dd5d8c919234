// Reading the fields of a tokenizer.json (or tokenizer_config.json) with errors that say which file and which
// field is missing or of the wrong type. `context` is "<file>: <path of the object>", e.g.
// "/data/tokenizer.json: model".
#pragma once

#include "dsv3/core/error.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace dsv3::data::json_fields {

inline std::string type_name(const nlohmann::json& value) { return value.type_name(); }

inline void require_object(const nlohmann::json& value, std::string_view context) {
  DSV3_CHECK(value.is_object(), "{}: expected an object, found {}", context, type_name(value));
}

// A member that must be present (null counts as present).
inline const nlohmann::json& member(const nlohmann::json& object, std::string_view key, std::string_view context) {
  require_object(object, context);
  const auto it = object.find(key);
  DSV3_CHECK(it != object.end(), "{}: missing field '{}'", context, key);
  return *it;
}

// The member, or nullptr when it is absent or null.
inline const nlohmann::json* optional_member(const nlohmann::json& object, std::string_view key,
                                             std::string_view context) {
  require_object(object, context);
  const auto it = object.find(key);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

inline std::string string_member(const nlohmann::json& object, std::string_view key, std::string_view context) {
  const nlohmann::json& value = member(object, key, context);
  DSV3_CHECK(value.is_string(), "{}.{}: expected a string, found {}", context, key, type_name(value));
  return value.get<std::string>();
}

inline bool bool_member(const nlohmann::json& object, std::string_view key, bool fallback, std::string_view context) {
  const nlohmann::json* value = optional_member(object, key, context);
  if (value == nullptr) return fallback;
  DSV3_CHECK(value->is_boolean(), "{}.{}: expected true or false, found {}", context, key, type_name(*value));
  return value->get<bool>();
}

}  // namespace dsv3::data::json_fields
