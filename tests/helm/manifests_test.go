package helm_test

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// manifests is one helm template output, decoded.
type manifests struct {
	Deployment     *appsv1.Deployment
	Service        *corev1.Service
	ServiceAccount *corev1.ServiceAccount
	ConfigMaps     map[string]*corev1.ConfigMap
	HPA            *autoscalingv2.HorizontalPodAutoscaler
	PDB            *policyv1.PodDisruptionBudget
	// ServiceMonitor is a monitoring.coreos.com/v1 object, kept
	// unstructured (its CRD types are not a dependency).
	ServiceMonitor map[string]any
}

// decodeManifests splits a multi-document stream and decodes each document
// strictly (unknown or duplicate fields are errors) into its API type. A
// kind the chart is not expected to render, or one rendered twice, is an
// error.
func decodeManifests(out string) (*manifests, error) {
	m := &manifests{ConfigMaps: map[string]*corev1.ConfigMap{}}
	n := 0
	for doc := range strings.SplitSeq(out, "\n---\n") {
		doc = strings.TrimPrefix(doc, "---\n")
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		n++
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		gvk := tm.APIVersion + "/" + tm.Kind
		var err error
		switch gvk {
		case "apps/v1/Deployment":
			err = decodeOnce(doc, &m.Deployment)
		case "v1/Service":
			err = decodeOnce(doc, &m.Service)
		case "v1/ServiceAccount":
			err = decodeOnce(doc, &m.ServiceAccount)
		case "autoscaling/v2/HorizontalPodAutoscaler":
			err = decodeOnce(doc, &m.HPA)
		case "policy/v1/PodDisruptionBudget":
			err = decodeOnce(doc, &m.PDB)
		case "v1/ConfigMap":
			var cm *corev1.ConfigMap
			if err = decodeOnce(doc, &cm); err == nil {
				if _, dup := m.ConfigMaps[cm.Name]; dup {
					err = fmt.Errorf("ConfigMap %q rendered twice", cm.Name)
				}
				m.ConfigMaps[cm.Name] = cm
			}
		case "monitoring.coreos.com/v1/ServiceMonitor":
			if m.ServiceMonitor != nil {
				err = fmt.Errorf("rendered twice")
				break
			}
			err = yaml.UnmarshalStrict([]byte(doc), &m.ServiceMonitor)
		default:
			err = fmt.Errorf("unexpected kind")
		}
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", gvk, tm.Metadata.Name, err)
		}
	}
	if n == 0 {
		return nil, errNoDocs
	}
	return m, nil
}

// decodeOnce strictly decodes doc into a new *T stored in *dst, failing if
// *dst is already set.
func decodeOnce[T any](doc string, dst **T) error {
	if *dst != nil {
		return fmt.Errorf("rendered twice")
	}
	v := new(T)
	if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
		return err
	}
	*dst = v
	return nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// container returns the pod template's container called name.
func (m *manifests) container(name string) *corev1.Container {
	for i := range m.Deployment.Spec.Template.Spec.Containers {
		if c := &m.Deployment.Spec.Template.Spec.Containers[i]; c.Name == name {
			return c
		}
	}
	return nil
}

func (m *manifests) volume(name string) *corev1.Volume {
	for i := range m.Deployment.Spec.Template.Spec.Volumes {
		if v := &m.Deployment.Spec.Template.Spec.Volumes[i]; v.Name == name {
			return v
		}
	}
	return nil
}

// mountFor returns the mount of c whose path holds file, and the file's
// path inside the volume.
func mountFor(c *corev1.Container, file string) (*corev1.VolumeMount, string) {
	for i := range c.VolumeMounts {
		vm := &c.VolumeMounts[i]
		if rest, ok := strings.CutPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/"); ok {
			return vm, rest
		}
	}
	return nil, ""
}

func portNamed(c *corev1.Container, name string) (int32, bool) {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

// argAfter returns the argument after flag in args.
func argAfter(args []string, flag string) (string, bool) {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}
