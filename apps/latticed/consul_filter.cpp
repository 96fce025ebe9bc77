#include "consul_filter.hpp"

#include <charconv>
#include <cstdint>
#include <optional>

#include <boost/fusion/include/at_c.hpp>
#include <boost/spirit/home/x3.hpp>
#include <re2/re2.h>

namespace lattice::daemon::consul {

using nlohmann::json;

// Named, not anonymous: filter::node (declared in the header) holds one.
namespace filter_ops {
enum class op_code { equal, not_equal, contains, not_contains, matches, not_matches, is_empty, is_not_empty };
}  // namespace filter_ops
using filter_ops::op_code;

struct filter::node {
  enum class kind { either, both, negation, match } type = kind::match;
  std::shared_ptr<node> left, right;  // either/both: both sides; negation: left
  // kind::match: the positive operator, and whether the answer is negated.
  std::vector<std::string> selector;
  op_code op = op_code::equal;
  std::string value;
  std::shared_ptr<const re2::RE2> pattern;  // op_code::matches
};

namespace {

using node_ptr = std::shared_ptr<filter::node>;

node_ptr combine(filter::node::kind type, node_ptr left, node_ptr right) {
  auto n = std::make_shared<filter::node>();
  n->type = type;
  n->left = std::move(left);
  n->right = std::move(right);
  return n;
}

node_ptr match_node(std::vector<std::string> selector, op_code op, std::string value) {
  auto n = std::make_shared<filter::node>();
  n->selector = std::move(selector);
  n->op = op;
  n->value = std::move(value);
  return n;
}

// ---- grammar (go-bexpr's, in Spirit X3) -------------------------------------------------

namespace grammar {

namespace x3 = boost::spirit::x3;
using boost::fusion::at_c;

// Character classes by range, never x3::alpha or x3::space: those call
// <cctype> on the byte, which is undefined (and asserts in Spirit) for a
// byte past 127, and a filter may hold any byte.
const auto letter = x3::char_('a', 'z') | x3::char_('A', 'Z');
const auto digit = x3::char_('0', '9');
const auto blank = x3::char_(" \t\r\n");

// A keyword: the word, not the start of a longer one ("not" vs "notes").
auto kw(const char* word) { return x3::lexeme[x3::lit(word) >> !(letter | digit | x3::char_('_'))]; }

struct escapes_table : x3::symbols<char> {
  escapes_table() { add("\\\"", '"')("\\\\", '\\')("\\n", '\n')("\\t", '\t')("\\r", '\r')("\\/", '/'); }
} const escapes;

const x3::rule<class identifier_r, std::string> identifier = "identifier";
const x3::rule<class quoted_r, std::string> quoted = "string";
const x3::rule<class selector_r, std::vector<std::string>> selector = "selector";
const x3::rule<class value_r, std::string> value = "value";
const x3::rule<class binary_op_r, op_code> binary_op = "operator";
const x3::rule<class empty_op_r, op_code> empty_op = "operator";
const x3::rule<class in_op_r, op_code> in_op = "operator";
const x3::rule<class match_r, node_ptr> match = "match";
const x3::rule<class primary_r, node_ptr> primary = "expression";
const x3::rule<class negation_r, node_ptr> negation = "expression";
const x3::rule<class conjunction_r, node_ptr> conjunction = "expression";
const x3::rule<class disjunction_r, node_ptr> disjunction = "expression";

const auto identifier_def = x3::lexeme[letter >> *(letter | digit | x3::char_('_'))];
const auto quoted_def = x3::lexeme['"' >> *(escapes | (x3::char_ - '"' - '\\')) >> '"'] |
                        x3::lexeme['`' >> *(x3::char_ - '`') >> '`'];
// Service.Meta.version, ServiceMeta["zone"], Checks.0.Status
const auto selector_def =
    x3::lexeme[identifier >> *(('.' >> (identifier | +digit)) | ('[' >> x3::skip(blank)[quoted] >> ']'))];
const auto value_def = quoted | x3::lexeme[+(letter | digit | x3::char_("._:/+@") | x3::char_('-'))];

const auto binary_op_def = (x3::lit("==") >> x3::attr(op_code::equal)) | (x3::lit("!=") >> x3::attr(op_code::not_equal)) |
                           (kw("contains") >> x3::attr(op_code::contains)) |
                           (kw("not") >> kw("contains") >> x3::attr(op_code::not_contains)) |
                           (kw("matches") >> x3::attr(op_code::matches)) |
                           (kw("not") >> kw("matches") >> x3::attr(op_code::not_matches));
const auto empty_op_def = (kw("is") >> kw("empty") >> x3::attr(op_code::is_empty)) |
                          (kw("is") >> kw("not") >> kw("empty") >> x3::attr(op_code::is_not_empty));
const auto in_op_def =
    (kw("in") >> x3::attr(op_code::contains)) | (kw("not") >> kw("in") >> x3::attr(op_code::not_contains));

const auto make_binary = [](auto& ctx) {
  auto& a = x3::_attr(ctx);
  x3::_val(ctx) = match_node(at_c<0>(a), at_c<1>(a), at_c<2>(a));
};
const auto make_empty = [](auto& ctx) {
  auto& a = x3::_attr(ctx);
  x3::_val(ctx) = match_node(at_c<0>(a), at_c<1>(a), {});
};
const auto make_in = [](auto& ctx) {  // "value" in Selector
  auto& a = x3::_attr(ctx);
  x3::_val(ctx) = match_node(at_c<2>(a), at_c<1>(a), at_c<0>(a));
};
const auto match_def = (selector >> binary_op >> value)[make_binary] | (selector >> empty_op)[make_empty] |
                       (value >> in_op >> selector)[make_in];

const auto pass = [](auto& ctx) { x3::_val(ctx) = x3::_attr(ctx); };
const auto make_not = [](auto& ctx) { x3::_val(ctx) = combine(filter::node::kind::negation, x3::_attr(ctx), nullptr); };
const auto make_and = [](auto& ctx) {
  x3::_val(ctx) = combine(filter::node::kind::both, x3::_val(ctx), x3::_attr(ctx));
};
const auto make_or = [](auto& ctx) {
  x3::_val(ctx) = combine(filter::node::kind::either, x3::_val(ctx), x3::_attr(ctx));
};

const auto primary_def = ('(' >> disjunction >> ')')[pass] | match[pass];
const auto negation_def = (kw("not") >> negation)[make_not] | primary[pass];
const auto conjunction_def = negation[pass] >> *(kw("and") >> negation)[make_and];
const auto disjunction_def = conjunction[pass] >> *(kw("or") >> conjunction)[make_or];

BOOST_SPIRIT_DEFINE(identifier, quoted, selector, value, binary_op, empty_op, in_op, match, primary, negation,
                    conjunction, disjunction)

}  // namespace grammar

// The parser recurses once per '(' and per "not": bounded, so that no
// filter can exhaust the stack. Counts both outside string literals.
constexpr std::size_t kMaxNesting = 64;

std::size_t nesting_of(std::string_view text) {
  std::size_t nesting = 0;
  char quote = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quote != 0) {
      if (c == '\\' && quote == '"') ++i;
      else if (c == quote) quote = 0;
      continue;
    }
    const auto word_char = [&](std::size_t at) {
      const char w = text[at];
      return (w >= 'a' && w <= 'z') || (w >= 'A' && w <= 'Z') || (w >= '0' && w <= '9') || w == '_';
    };
    if (c == '"' || c == '`') quote = c;
    else if (c == '(') ++nesting;
    else if (c == 'n' && text.substr(i, 3) == "not" && (i == 0 || !word_char(i - 1)) &&
             (i + 3 == text.size() || !word_char(i + 3)))
      ++nesting;
  }
  return nesting;
}

// ---- checks after parsing --------------------------------------------------------------

std::string dotted(const std::vector<std::string>& selector) {
  std::string out;
  for (const auto& s : selector) out += (out.empty() ? "" : ".") + s;
  return out;
}

// Whether `schema` names `selector`, or a field it leads to (Checks, for
// Checks.Status; Service.Meta, for Service.Meta.*).
bool known(const std::vector<std::string>& selector, const selector_schema& schema) {
  for (const std::string_view entry : schema) {
    std::size_t i = 0, at = 0;
    bool same = true;
    while (same && i < selector.size() && at <= entry.size()) {
      const std::size_t end = std::min(entry.find('.', at), entry.size());
      const std::string_view segment = entry.substr(at, end - at);
      same = segment == "*" || segment == selector[i];
      ++i;
      at = end + 1;
    }
    if (same && i == selector.size()) return true;
  }
  return false;
}

// Validates every match below `n` and compiles its regular expression;
// the error, if any.
std::optional<std::string> prepare(filter::node& n, const selector_schema& schema) {
  if (n.type != filter::node::kind::match) {
    for (auto* side : {&n.left, &n.right})
      if (*side)
        if (auto error = prepare(**side, schema)) return error;
    return std::nullopt;
  }
  if (!known(n.selector, schema)) return "Selector \"" + dotted(n.selector) + "\" is not valid";
  if (n.op == op_code::matches || n.op == op_code::not_matches) {
    RE2::Options options;
    options.set_log_errors(false);
    auto re = std::make_shared<re2::RE2>(n.value, options);
    if (!re->ok()) return "Invalid regular expression \"" + n.value + "\": " + re->error();
    n.pattern = std::move(re);
  }
  return std::nullopt;
}

// ---- evaluation ------------------------------------------------------------------------

std::optional<bool> as_bool(const std::string& v) {  // Go's strconv.ParseBool
  if (v == "1" || v == "t" || v == "T" || v == "true" || v == "TRUE" || v == "True") return true;
  if (v == "0" || v == "f" || v == "F" || v == "false" || v == "FALSE" || v == "False") return false;
  return std::nullopt;
}

bool equal(const json& leaf, const std::string& v) {
  if (leaf.is_string()) return leaf.get_ref<const std::string&>() == v;
  if (leaf.is_boolean()) return as_bool(v) == leaf.get<bool>();
  if (leaf.is_number_unsigned()) {
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    return ec == std::errc{} && end == v.data() + v.size() && n == leaf.get<std::uint64_t>();
  }
  if (leaf.is_number_integer()) {
    std::int64_t n = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    return ec == std::errc{} && end == v.data() + v.size() && n == leaf.get<std::int64_t>();
  }
  if (leaf.is_number_float()) {
    double n = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    return ec == std::errc{} && end == v.data() + v.size() && n == leaf.get<double>();
  }
  return false;
}

// The positive operator on the selected value.
bool holds(const json& leaf, const filter::node& m) {
  switch (m.op) {
    case op_code::equal:
    case op_code::not_equal:
      return equal(leaf, m.value);
    case op_code::contains:
    case op_code::not_contains:
      if (leaf.is_array()) {
        for (const auto& e : leaf)
          if (equal(e, m.value)) return true;
        return false;
      }
      if (leaf.is_object()) return leaf.contains(m.value);
      if (leaf.is_string()) return leaf.get_ref<const std::string&>().find(m.value) != std::string::npos;
      return false;
    case op_code::matches:
    case op_code::not_matches:
      return leaf.is_string() && re2::RE2::PartialMatch(leaf.get_ref<const std::string&>(), *m.pattern);
    case op_code::is_empty:
    case op_code::is_not_empty:
      return leaf.is_null() || ((leaf.is_string() || leaf.is_array() || leaf.is_object()) && leaf.empty());
  }
  return false;
}

// Follows the selector from segment `i`; through an array, any element.
bool holds_at(const json& v, const filter::node& m, std::size_t i) {
  if (i == m.selector.size()) return holds(v, m);
  if (v.is_array()) {
    for (const auto& e : v)
      if (holds_at(e, m, i)) return true;
    return false;
  }
  if (!v.is_object()) return false;
  const auto it = v.find(m.selector[i]);
  if (it == v.end()) return m.op == op_code::is_empty || m.op == op_code::is_not_empty ? i + 1 == m.selector.size()
                                                                                          : false;
  return holds_at(*it, m, i + 1);
}

bool evaluate(const filter::node& n, const json& item) {
  switch (n.type) {
    case filter::node::kind::either:
      return evaluate(*n.left, item) || evaluate(*n.right, item);
    case filter::node::kind::both:
      return evaluate(*n.left, item) && evaluate(*n.right, item);
    case filter::node::kind::negation:
      return !evaluate(*n.left, item);
    case filter::node::kind::match:
      break;
  }
  const bool positive = holds_at(item, n, 0);
  const bool negated =
      n.op == op_code::not_equal || n.op == op_code::not_contains || n.op == op_code::not_matches ||
      n.op == op_code::is_not_empty;
  return negated ? !positive : positive;
}

}  // namespace

std::variant<filter, std::string> filter::parse(std::string_view expression, const selector_schema& schema) {
  constexpr std::size_t kMaxLength = 4096;
  if (expression.size() > kMaxLength)
    return "Failed to create boolean expression evaluator: the filter is longer than " + std::to_string(kMaxLength) +
           " characters";
  if (nesting_of(expression) > kMaxNesting)
    return "Failed to create boolean expression evaluator: the filter nests parentheses and \"not\" deeper than " +
           std::to_string(kMaxNesting);
  node_ptr root;
  auto first = expression.begin();
  const bool parsed = grammar::x3::phrase_parse(first, expression.end(), grammar::disjunction >> grammar::x3::eoi,
                                                 grammar::blank, root);
  if (!parsed || !root) {
    const auto at = static_cast<std::size_t>(first - expression.begin());
    return "Failed to create boolean expression evaluator: no valid expression at character " +
           std::to_string(at + 1) + " of \"" + std::string(expression) + "\"";
  }
  if (auto error = prepare(*root, schema)) return "Failed to create boolean expression evaluator: " + *error;
  return filter(std::move(root));
}

bool filter::matches(const json& item) const { return evaluate(*root_, item); }

void filter::apply(json& answer) const {
  if (answer.is_array()) {
    json kept = json::array();
    for (auto& item : answer)
      if (matches(item)) kept.push_back(std::move(item));
    answer = std::move(kept);
  } else if (answer.is_object()) {
    for (auto it = answer.begin(); it != answer.end();) it = matches(*it) ? std::next(it) : answer.erase(it);
  }
}

const selector_schema check_selectors = {"Node",      "CheckID",     "Name",        "Status",     "Notes",
                                         "Output",    "ServiceID",   "ServiceName", "ServiceTags", "Type"};
const selector_schema catalog_service_selectors = {
    "ID",          "Node",          "Address",        "Datacenter",      "TaggedAddresses.*",
    "NodeMeta.*",  "ServiceKind",   "ServiceID",      "ServiceName",     "ServiceTags",
    "ServiceAddress", "ServiceWeights.Passing", "ServiceWeights.Warning", "ServiceMeta.*", "ServicePort",
    "ServiceEnableTagOverride"};
const selector_schema health_service_selectors = {
    "Node.ID",          "Node.Node",         "Node.Address",      "Node.Datacenter",  "Node.TaggedAddresses.*",
    "Node.Meta.*",      "Service.ID",        "Service.Service",   "Service.Tags",     "Service.Address",
    "Service.Meta.*",   "Service.Port",      "Service.Weights.Passing", "Service.Weights.Warning",
    "Checks.Node",      "Checks.CheckID",    "Checks.Name",       "Checks.Status",    "Checks.Notes",
    "Checks.Output",    "Checks.ServiceID",  "Checks.ServiceName", "Checks.ServiceTags", "Checks.Type"};
const selector_schema node_selectors = {"ID", "Node", "Address", "Datacenter", "TaggedAddresses.*", "Meta.*"};
const selector_schema agent_service_selectors = {"ID",   "Service", "Tags",    "Meta.*",         "Port",
                                                 "Address", "Weights.Passing", "Weights.Warning",
                                                 "EnableTagOverride", "Datacenter"};

}  // namespace lattice::daemon::consul
