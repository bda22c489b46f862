/* template.c — `tandem template`: renders a messages file with the model's chat template (or a template file)
 * and prints exactly the prompt the model would see. Loads only the tokenizer, never the weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char TEMPLATE_HELP[] =
    "usage: tandem template -m MODEL --messages MSGS.json [--tools TOOLS.json] [--no-think] [--generation-prompt]\n"
    "                       [--chat-template-file FILE] [--kwargs JSON]\n"
    "Prints the prompt that MODEL's chat template makes of a conversation, and nothing else.\n"
    "  -m, --model MODEL          GGUF file, Hugging Face folder or tokenizer folder (only the tokenizer is read)\n"
    "      --messages FILE        an OpenAI messages array (JSON; '-' = stdin)\n"
    "      --tools FILE           an OpenAI tools array (JSON)\n"
    "      --no-think             enable_thinking=false (Qwen3: an empty <think></think> after the prompt)\n"
    "      --think                enable_thinking=true\n"
    "      --generation-prompt    end with the assistant's opening (add_generation_prompt)\n"
    "      --chat-template-file F use the Jinja template in F instead of the model's (then -m is optional; with -m\n"
    "                             the model's bos_token and eos_token are still passed)\n"
    "      --kwargs JSON          further template variables, a JSON object (chat_template_kwargs)\n";

int cmd_template(int argc, char **argv) {
    args a = {"template", argc, argv, 0};
    const char *model_path = NULL, *messages_path = NULL, *tools_path = NULL, *template_path = NULL;
    tandem_chat_render_params p = tandem_chat_render_default_params();
    for (a.i = 1; a.i < argc; a.i++) {
        const char *f = argv[a.i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(TEMPLATE_HELP, stdout);
            return 0;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) model_path = take_value(&a, f);
        else if (!strcmp(f, "--messages")) messages_path = take_value(&a, f);
        else if (!strcmp(f, "--tools")) tools_path = take_value(&a, f);
        else if (!strcmp(f, "--chat-template-file")) template_path = take_value(&a, f);
        else if (!strcmp(f, "--kwargs")) p.extra_context_json = take_value(&a, f);
        else if (!strcmp(f, "--no-think")) p.enable_thinking = 0;
        else if (!strcmp(f, "--think")) p.enable_thinking = 1;
        else if (!strcmp(f, "--generation-prompt")) p.add_generation_prompt = true;
        else die_usage("template", "unknown option '%s'", f);
    }
    if (!model_path && !template_path) die_usage("template", "missing -m MODEL (or --chat-template-file FILE)");
    if (!messages_path) die_usage("template", "missing --messages MSGS.json");
    size_t messages_len;
    char *messages = read_file("template", messages_path, &messages_len);
    char *tools = tools_path ? read_file("template", tools_path, &(size_t){0}) : NULL;
    p.tools_json = tools;
    tandem_tokenizer *tok = NULL;
    tandem_status st;
    /* the tokenizer also when a template file is given: its special tokens are the template's bos/eos_token */
    if (model_path && (st = tandem_tokenizer_load(model_path, &tok))) die_status("template", st);
    tandem_chat_template *tmpl = load_chat_template("template", tok, model_path, template_path, tools != NULL);
    set_template_special_tokens(&p, tok);
    char *text;
    size_t text_len;
    if ((st = tandem_chat_render(tmpl, messages, messages_len, &p, &text, &text_len))) die_status("template", st);
    fwrite(text, 1, text_len, stdout);
    int rc = fflush(stdout) ? EXIT_FAILED : 0;
    tandem_free(text);
    tandem_chat_template_free(tmpl);
    tandem_tokenizer_free(tok);
    free(tools);
    free(messages);
    return rc;
}
