package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// completionExamples show where each shell's script goes; cobra generates
// the scripts themselves.
var completionExamples = map[string]string{
	"bash": `  source <(stormguard completion bash)                                  # this shell only
  stormguard completion bash > /etc/bash_completion.d/stormguard        # every new shell (Debian: needs bash-completion)`,
	"zsh": `  stormguard completion zsh > "${fpath[1]}/_stormguard"                # then start a new shell
  echo "autoload -U compinit; compinit" >> ~/.zshrc                     # once, if completion is not enabled yet`,
	"fish": `  stormguard completion fish | source                                  # this shell only
  stormguard completion fish > ~/.config/fish/completions/stormguard.fish`,
	"powershell": `  stormguard completion powershell | Out-String | Invoke-Expression`,
}

// addCompletionAndHelp adds cobra's built-in 'completion' and 'help'
// commands now rather than lazily inside Execute, so that they carry
// examples and show up in tests that walk the command tree.
func addCompletionAndHelp(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	root.InitDefaultHelpCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "completion":
			c.Long = `Print a shell completion script for stormguard: commands, subcommands and
flags (with their descriptions) complete on Tab. Supported shells: bash, zsh,
fish and powershell; each subcommand's help says where to put the script.

bash needs the bash-completion package (Debian: apt-get install bash-completion).`
			c.Example = `  source <(stormguard completion bash)
  stormguard completion zsh > "${fpath[1]}/_stormguard"
  stormguard completion fish > ~/.config/fish/completions/stormguard.fish`
			for _, sh := range c.Commands() {
				if ex, ok := completionExamples[sh.Name()]; ok {
					sh.Example = ex
				}
				// Cobra's scripts are written to the output captured when
				// the command was made; write to the command's current
				// output instead, so SetOut (and tests) see them.
				shell := sh.Name()
				sh.RunE = func(cmd *cobra.Command, _ []string) error {
					desc := true
					if f := cmd.Flags().Lookup("no-descriptions"); f != nil && f.Value.String() == "true" {
						desc = false
					}
					return genCompletion(root, cmd.OutOrStdout(), shell, desc)
				}
				sh.Run = nil
			}
		case "help":
			c.Long = `Help prints the long description, flags and examples of any command.
"stormguard CMD --help" is the same.`
			c.Example = `  stormguard help watch
  stormguard help defuse apply`
		}
	}
}

// genCompletion writes one shell's completion script for root.
func genCompletion(root *cobra.Command, w io.Writer, shell string, desc bool) error {
	switch shell {
	case "bash":
		return root.GenBashCompletionV2(w, desc)
	case "zsh":
		if desc {
			return root.GenZshCompletion(w)
		}
		return root.GenZshCompletionNoDesc(w)
	case "fish":
		return root.GenFishCompletion(w, desc)
	case "powershell":
		if desc {
			return root.GenPowerShellCompletionWithDesc(w)
		}
		return root.GenPowerShellCompletion(w)
	}
	return usageErr(fmt.Errorf("completion: unknown shell %q (want bash, zsh, fish or powershell)", shell))
}
