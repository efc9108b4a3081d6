# Print, as JSON, the configuration Vagrant itself compiles from the
# Vagrantfile: what `vagrant up` would use, read without a provider, a box or
# a network. Run with the cwd and environment the test chooses:
#   ruby vagrant_config.rb REPO
require "json"
require "vagrant"

env = Vagrant::Environment.new(cwd: ARGV.fetch(0))
# provider nil: no "is VirtualBox installed?" check. Every provider block is
# still run (a Ruby error in one fails here); VirtualBox's is kept in its real
# config class, so its settings can be read back.
loaded, = env.vagrantfile.machine_config(:default, nil, env.boxes)
vm = loaded[:config].vm
vb = vm.get_provider_config(:virtualbox)

puts JSON.generate(
  box: vm.box,
  providers: vm.instance_variable_get(:@__providers).keys.map(&:to_s),
  forwarded_ports: vm.networks.select { |type, _| type == :forwarded_port }
                     .map { |_, o| o.slice(:id, :guest, :host, :host_ip) },
  synced_folders: vm.synced_folders.values
                    .map { |o| { guest: o[:guestpath], host: o[:hostpath], disabled: !!o[:disabled] } },
  provisioners: vm.provisioners.map { |p|
    { name: p.name.to_s, inline: p.config.inline, path: p.config.path, env: p.config.env, run: p.run.to_s }
  },
  virtualbox: { name: vb.name, modifyvm: vb.customizations.map { |_, cmd| cmd.map(&:to_s) } },
)
