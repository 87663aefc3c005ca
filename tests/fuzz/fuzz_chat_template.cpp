// Fuzz target: a chat template's text parsed and rendered as transformers renders it, on a conversation with a
// system message, two turns and a tool list; the engine's limits must stop every runaway template cleanly.
#include "fuzz_util.h"
#include "qls/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    qls_fuzz::expect_only_user_errors([&] {
        qls::template_limits lim;
        lim.max_steps = 200'000; // keeps each input fast; the defaults are tested in tst_chat_template
        lim.max_output_bytes = size_t(1) << 20;
        const qls::jinja_template t = qls::jinja_template::parse(std::string(qls_fuzz::as_text(data, size)), "fuzz",
                                                                 lim);
        const nlohmann::ordered_json messages = nlohmann::ordered_json::parse(R"([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Weather?"}])");
        qls::chat_request req;
        req.add_generation_prompt = true;
        req.tools = nlohmann::ordered_json::parse(
            R"([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])");
        req.variables["bos_token"] = "<s>";
        req.variables["eos_token"] = "</s>";
        qls::render_options opt;
        opt.now = qls_fuzz::fixed_date;
        (void)qls::render_chat(t, messages, req, opt);
    });
    return 0;
}
